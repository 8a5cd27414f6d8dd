import { rm } from 'node:fs/promises';
import {
  BerthError,
  Code,
  type ShimCreateRequest,
  type ShimKillRequest,
  type ShimState,
  type ShimTaskRef,
} from '@berth/api';
import { containerFilesDir } from './container-files.js';
import { unmountShareableShm } from './container-shm.js';
import { ExecProcesses, type ExecRef, type ExecRequest } from './execs.js';
import type { ExitRecorder } from './exit-recorder.js';
import type { ShimHost } from './host.js';
import { checkName, taskPaths } from './paths.js';
import { transition } from './process-state.js';
import { type CreateOptions, createTask, MONITOR_GONE_WAIT_MS, removeBundle } from './task-bundle.js';
import { markKillTrace, normalizeSignal, procKey, startTrace, until } from './util.js';

const isExec = (ref: ShimTaskRef): ref is ExecRef => Boolean(ref.execId);

/**
 * The processes of this node: each task's init and the exec processes within it. Lifecycle
 * operations take a reference to either and act on the right one; whether an operation is allowed
 * in a process's state is the transition table's answer (process-state.ts), asked through
 * ShimHost.mustAllow and ShimHost.move.
 */
export class ProcessTable {
  readonly execs: ExecProcesses;

  constructor(
    private readonly host: ShimHost,
    private readonly exits: ExitRecorder,
  ) {
    this.execs = new ExecProcesses(host, exits);
  }

  /** Creates a task (see createTask): bundle, monitor, `runc create`, record. */
  create(req: ShimCreateRequest, opts?: CreateOptions): Promise<ShimState> {
    return createTask(this.host, this.exits, req, opts);
  }

  /** Prepares an exec process in a running task; `start` with its execId runs it. */
  exec(req: ExecRequest): Promise<ShimState> {
    return this.execs.create(req);
  }

  /** Starts a created task (runc's start, see Runc.startCreated), or lets a created exec run. */
  async start(ref: ShimTaskRef): Promise<ShimState> {
    if (isExec(ref)) return this.execs.start(ref);
    return this.host.serial(procKey(ref.namespace, ref.id), async () => {
      const rec = await this.host.mustAllow(ref, 'start');
      await this.host.runc(ref.namespace).startCreated(ref.id, rec.pid);
      await this.host.move(rec, 'start', { startedAt: new Date().toISOString(), ...startTrace() });
      return this.host.toState(await this.host.mustGet(ref));
    });
  }

  /** The wire state of a task or exec. */
  async state(ref: ShimTaskRef): Promise<ShimState> {
    return this.host.toState(await this.host.mustGet(ref));
  }

  /** Every task on this node (in one namespace, or all). */
  async list(ns?: string): Promise<ShimState[]> {
    const out: ShimState[] = [];
    for (const r of await this.host.store.taskRefs()) {
      if (ns && r.namespace !== ns) continue;
      const rec = await this.host.store.get(r.namespace, r.id);
      if (rec) out.push(this.host.toState(rec));
    }
    return out;
  }

  /**
   * A signal to the task's init (or all its processes) or to an exec. A process that has already
   * exited is not an error (delivered: false), so `rm -f` can always kill first.
   */
  async kill(req: ShimKillRequest): Promise<{ delivered: boolean }> {
    const signal = normalizeSignal(req.signal);
    if (isExec(req)) return this.execs.kill(req, signal);
    const rec = await this.host.mustAllow(req, 'kill');
    if (rec.status === 'stopped') return { delivered: false };
    await markKillTrace(this.host.store, { namespace: req.namespace, id: req.id });
    // runc kill --all freezes the cgroup to signal each process: SIGKILL to the init of a PID
    // namespace of its own reaches them all anyway (the kernel kills the namespace), without it.
    const all = req.all && !(rec.ownPidNs && signal === 'SIGKILL');
    try {
      await this.host.runc(req.namespace).kill(req.id, signal, all);
    } catch (err) {
      if (err instanceof BerthError && err.code === Code.NOT_FOUND) return { delivered: false };
      throw err;
    }
    if (rec.status === 'paused') {
      // A frozen cgroup holds the signal pending: thaw it so the signal acts (rm -f of a paused task).
      await this.host.serial(procKey(req.namespace, req.id), async () => {
        await this.host
          .runc(req.namespace)
          .resume(req.id)
          .catch((err: unknown) => {
            // runc kill --all thaws by itself ("not paused" then); a task gone is fine too.
            const benign =
              err instanceof BerthError && (err.code === Code.NOT_FOUND || /not paused/.test(err.message));
            if (!benign) throw err;
          });
        await this.host.move(rec, 'kill');
      });
    }
    return { delivered: true };
  }

  /**
   * Removes a stopped (or never started) task: runc state, monitor, mounts, bundle, default log and
   * records, its execs' included; or an exec that is not running. A running or paused task is
   * refused: kill it and wait first.
   */
  async delete(ref: ShimTaskRef): Promise<ShimState> {
    if (isExec(ref)) return this.execs.delete(ref);
    const { namespace: ns, id } = ref;
    return this.host.serial(procKey(ns, id), async () => {
      let rec = await this.host.mustAllow(ref, 'delete');
      if (rec.status !== 'stopped') {
        // created or unknown: runc kills the init; conmon then records that exit.
        await this.host.runc(ns).delete(id, true);
        const exited = await until(async () => {
          await this.exits.handleExit(ns, id);
          return (await this.host.store.get(ns, id))?.status === 'stopped';
        }, MONITOR_GONE_WAIT_MS);
        if (!exited) await this.exits.recordLost(rec, 'Deleted');
        rec = await this.host.mustGet(ref);
      }
      for (const execId of await this.host.store.execIds(ns, id)) await this.execs.drop(ns, id, execId);
      const ms = await removeBundle(this.host, ns, id);
      if (rec.logPath === taskPaths(this.host.layout, ns, id).defaultLog)
        await rm(rec.logPath, { force: true });
      await this.host.store.removeTask(ns, id);
      this.host.log.info({ ns, id, ms }, 'task deleted');
      return this.host.toState(rec);
    });
  }

  /**
   * Removes a container's generated files, shareable /dev/shm (unmounted first) and kept log on
   * this node, once it has no task here (the task-service calls it when the container is
   * removed). Absent is fine.
   */
  async removeFiles(ref: ShimTaskRef): Promise<void> {
    const { namespace: ns, id } = ref;
    checkName('namespace', ns);
    checkName('task id', id);
    await this.host.serial(procKey(ns, id), async () => {
      const rec = await this.host.store.get(ns, id);
      transition({ id }, rec?.status ?? 'deleted', 'remove-files');
      // A failed unmount fails the call (retried by the caller's reconcile) before any rm.
      await unmountShareableShm(this.host.layout, ns, id);
      await rm(containerFilesDir(this.host.layout, ns, id), { recursive: true, force: true });
    });
  }

  /** Ends every exec prepared but not started (see ExecProcesses.close). */
  close(): void {
    this.execs.close();
  }
}
