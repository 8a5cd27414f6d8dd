import { mkdir, readFile, rm } from 'node:fs/promises';
import {
  BerthError,
  Code,
  ShimApi,
  type ShimState,
  type ShimTaskRef,
  START_MARGIN_MS,
  toBerthError,
} from '@berth/api';
import { withSpan } from '@berth/kit/tracing';
import { type SpawnedMonitor, spawnConmon } from '../runtime/conmon.js';
import { readIntFile, readIntFileNow } from '../runtime/monitor.js';
import { removeAttachLink } from './attach-links.js';
import type { ExitRecorder } from './exit-recorder.js';
import { writeAtomic } from './files.js';
import type { ShimHost } from './host.js';
import { applyUser } from './identity/index.js';
import { checkName, execPaths, taskPaths } from './paths.js';
import type { ProcRecord } from './store.js';
import {
  killMonitor,
  killProcessGroupOf,
  markKillTrace,
  procKey,
  runtimeFailure,
  startTrace,
} from './util.js';

/** What an exec takes from its task's bundle (config.json). */
interface TaskSpec {
  root?: { path?: unknown };
  process?: { apparmorProfile?: unknown };
}

/** The rootfs directory of a task, as its bundle's config.json names it. */
function taskRootfs(spec: TaskSpec, id: string): string {
  const path = spec.root?.path;
  if (typeof path !== 'string' || !path.startsWith('/')) {
    throw new BerthError(Code.FAILED_PRECONDITION, `task "${id}" has no rootfs path in its bundle`);
  }
  return path;
}

/** A reference to one exec process. */
export type ExecRef = ShimTaskRef & { execId: string };

/** What `exec` needs to prepare a process in a running task. */
export interface ExecRequest {
  namespace: string;
  id: string;
  execId: string;
  process: Record<string, unknown>;
  terminal: boolean;
  stdin: boolean;
  /** user[:group] to resolve against the task's rootfs into process.user. */
  user?: string;
}

/**
 * Exec processes of running tasks, each under its own conmon (exec mode). `create` prepares one:
 * conmon sets up its log, exit file and attach socket and then blocks on its start pipe, held here;
 * `start` releases it, so a client can attach before any output exists. Why conmon and not a runc
 * exec child of the agent: the process survives an agent restart and its exit is persisted by the
 * same exit-file path as a task's.
 */
export class ExecProcesses {
  /** Monitors prepared by this agent and waiting for start (their pipes live only here). */
  readonly pending = new Map<string, { mon: SpawnedMonitor; monitorPid: number }>();

  constructor(
    private readonly host: ShimHost,
    private readonly exits: ExitRecorder,
  ) {}

  /**
   * exec: prepares a new process in a running task. conmon (exec mode) sets up the process's log,
   * exit file and attach socket and then waits; `start` with the execId lets runc exec run, so a
   * client can attach before any output is written.
   */
  async create(req: ExecRequest): Promise<ShimState> {
    const { namespace: ns, id, execId } = req;
    checkName('exec id', execId);
    await this.host.mustAllow({ namespace: ns, id }, 'exec');
    const args = req.process.args;
    if (!Array.isArray(args) || args.length === 0) {
      throw new BerthError(Code.INVALID_ARGUMENT, `exec "${execId}": process.args must name a command`);
    }
    if (!(await this.host.store.reserveExec(ns, id, execId))) {
      throw new BerthError(Code.ALREADY_EXISTS, `exec "${execId}" already exists in task "${id}"`);
    }
    const tp = taskPaths(this.host.layout, ns, id);
    const ep = execPaths(this.host.layout, ns, id, execId);
    try {
      await rm(ep.dir, { recursive: true, force: true });
      await mkdir(ep.dir, { recursive: true });
      await rm(ep.persistDir, { recursive: true, force: true });
      await mkdir(ep.persistDir, { recursive: true });
      // runc refuses a process without cwd; "/" is what a user means by leaving it out.
      const proc: Record<string, unknown> = { cwd: '/', ...req.process, terminal: req.terminal };
      // Unreadable, it fails only an exec that needs its rootfs: runc keeps its own copy of the rest.
      const task = await readFile(tp.config, 'utf8')
        .then((text) => JSON.parse(text) as TaskSpec)
        .catch((err: unknown): TaskSpec => {
          if (req.user !== undefined) throw err;
          return {};
        });
      if (req.user !== undefined) {
        applyUser(proc, req.user, { rootfs: taskRootfs(task, id), task: id, home: true });
      }
      // An exec runs under its task's AppArmor profile, as the task's node resolved it at create
      // (the caller's process comes from the stored spec, which never has one).
      const profile = task.process?.apparmorProfile;
      if (typeof profile === 'string' && profile) proc.apparmorProfile = profile;
      else delete proc.apparmorProfile;
      await writeAtomic(ep.spec, JSON.stringify(proc));
      const mon = spawnConmon({
        conmon: this.host.conmon,
        runc: this.host.runcBinary,
        runcRoot: tp.runcRoot,
        cid: id,
        cuuid: ep.cuuid,
        dir: ep.dir,
        pidFile: ep.pidFile,
        conmonPidFile: ep.conmonPidFile,
        logPath: ep.log,
        persistDir: ep.persistDir,
        socketDir: tp.socketDir,
        terminal: req.terminal,
        stdin: req.stdin,
        execSpec: ep.spec,
        noSyncLog: await this.host.skipLogSync(),
      });
      const key = procKey(ns, id, execId);
      try {
        const ready = await mon.attach?.next(this.host.createTimeoutMs);
        if (!ready || ready.data < 0) throw runtimeFailure(`exec "${execId}"`, ready?.message);
      } catch (err) {
        killMonitor(await readIntFile(ep.conmonPidFile));
        mon.sync.close();
        mon.attach?.close();
        mon.start?.destroy();
        throw err;
      }
      const rec: ProcRecord = {
        namespace: ns,
        id,
        execId,
        status: 'created',
        pid: 0,
        monitorPid: readIntFileNow(ep.conmonPidFile) ?? 0,
        dir: ep.dir,
        logPath: ep.log,
        terminal: req.terminal,
        stdin: req.stdin,
        createdAt: new Date().toISOString(),
        ...startTrace(),
      };
      await this.host.store.put(rec);
      this.pending.set(key, { mon, monitorPid: rec.monitorPid });
      return this.host.toState(rec);
    } catch (err) {
      await removeAttachLink(tp.socketDir, ep.cuuid);
      await rm(ep.dir, { recursive: true, force: true });
      await rm(ep.persistDir, { recursive: true, force: true });
      await this.host.store.releaseExec(ns, id, execId);
      throw err;
    }
  }

  /** Lets a created exec run: releases conmon's start pipe and records the pid runc reports. */
  async start(ref: ExecRef): Promise<ShimState> {
    const { namespace: ns, id, execId } = ref;
    const key = procKey(ns, id, execId);
    return this.host.serial(key, async () => {
      const rec = await this.host.mustAllow(ref, 'start');
      const mon = this.pending.get(key)?.mon;
      if (!mon?.start) {
        throw new BerthError(
          Code.FAILED_PRECONDITION,
          `exec "${execId}" was prepared by an earlier shim agent and cannot be started: delete it and exec again`,
        );
      }
      this.pending.delete(key);
      await this.exits.watchExec(ns, id, execId);
      const start = mon.start;
      // conmon runs `runc exec` once its start pipe is released and reports the pid: runc's time.
      const runcAttrs = {
        'berth.container.id': id,
        'berth.exec.id': execId,
        'process.command': this.host.runcBinary,
        'process.command_args': [this.host.runcBinary, 'exec', '--process', rec.dir, id],
        'berth.runc.via': 'conmon',
      };
      const pid = await withSpan('runc exec', runcAttrs, async (span) => {
        try {
          start.write('1');
          // Within the start op's own deadline, so the caller hears why instead of its timeout.
          const within = Math.min(this.host.createTimeoutMs, ShimApi.ops.start.timeoutMs - START_MARGIN_MS);
          let timedOut = false;
          const msg = await mon.sync.next(within).catch(async (err: unknown) => {
            // conmon went away without a report: the runtime failed without a word (killed, or
            // conmon 2.2.0-2.2.1, which report no failed `runc exec`). Or conmon is still at it
            // past the deadline: it and the runtime it runs are stopped, so the process cannot
            // start later with nobody waiting for it. Either way a failed start as any other, so
            // the exec ends with an exit instead of staying created with no pid.
            const code = toBerthError(err).code;
            if (code !== Code.INTERNAL && code !== Code.DEADLINE_EXCEEDED) throw err;
            timedOut = code === Code.DEADLINE_EXCEEDED;
            if (timedOut)
              killProcessGroupOf(rec.monitorPid, execPaths(this.host.layout, ns, id, execId).conmonPidFile);
            // If runc did start it (its pid file is there) and conmon died after, the process runs
            // with nobody to record its exit or hold its output: it must not outlive this start.
            const orphan = await readIntFile(execPaths(this.host.layout, ns, id, execId).pidFile);
            if (orphan && orphan > 0) killMonitor(orphan);
            return { data: -1, message: (err as Error).message };
          });
          span.setAttribute('process.exit.code', msg.data > 0 ? 0 : Math.abs(msg.data) || 1);
          if (msg.data <= 0) {
            const err = timedOut
              ? new BerthError(
                  Code.DEADLINE_EXCEEDED,
                  `exec "${execId}" in task "${id}": the runtime did not start it within ${within} ms`,
                )
              : runtimeFailure(`exec "${execId}" in task "${id}" failed`, msg.message);
            await this.exits.recordExit(rec, {
              exitCode: err.code === Code.INVALID_ARGUMENT ? 127 : 126,
              reason: 'StartFailed',
            });
            throw err;
          }
          return msg.data;
        } finally {
          mon.sync.close();
          mon.attach?.close();
          start.destroy();
        }
      });
      await this.host.move(rec, 'start', {
        pid: String(pid),
        startedAt: new Date().toISOString(),
        ...startTrace(),
      });
      // An exit may have been handled before the pid was stored: handle again (idempotent).
      await this.exits.handleExit(ns, id, execId);
      return this.host.toState(await this.host.mustGet(ref));
    });
  }

  /** Ends an exec's monitor if it still runs and forgets the exec. */
  async drop(ns: string, id: string, execId: string): Promise<void> {
    const key = procKey(ns, id, execId);
    const pending = this.pending.get(key);
    if (pending) {
      killMonitor(pending.monitorPid);
      pending.mon.sync.close();
      pending.mon.attach?.close();
      pending.mon.start?.destroy();
      this.pending.delete(key);
    }
    const rec = await this.host.store.get(ns, id, execId);
    if (rec && this.host.monitorAlive(rec)) killMonitor(rec.monitorPid);
    this.exits.unwatchExec(ns, id, execId);
    const ep = execPaths(this.host.layout, ns, id, execId);
    await removeAttachLink(taskPaths(this.host.layout, ns, id).socketDir, ep.cuuid);
    await rm(ep.dir, { recursive: true, force: true });
    await rm(ep.persistDir, { recursive: true, force: true });
    await this.host.store.releaseExec(ns, id, execId);
  }

  /**
   * Signals an exec's process. One that has already exited is not an error (delivered: false); one
   * not started yet has no process to signal.
   */
  async kill(ref: ExecRef, signal: NodeJS.Signals | number): Promise<{ delivered: boolean }> {
    const rec = await this.host.mustAllow(ref, 'kill');
    if (rec.status === 'stopped') return { delivered: false };
    if (rec.pid <= 0) {
      throw new BerthError(Code.FAILED_PRECONDITION, `exec "${ref.execId}" has not been started`);
    }
    await markKillTrace(this.host.store, ref);
    try {
      process.kill(rec.pid, signal);
      return { delivered: true };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ESRCH') return { delivered: false };
      throw err;
    }
  }

  /** Forgets an exec that is not running (created or exited), its monitor and directory included. */
  async delete(ref: ExecRef): Promise<ShimState> {
    const { namespace: ns, id, execId } = ref;
    return this.host.serial(procKey(ns, id, execId), async () => {
      const rec = await this.host.mustAllow(ref, 'delete');
      await this.drop(ns, id, execId);
      return this.host.toState(rec);
    });
  }

  /** Ends every prepared exec: once its start pipe closes, conmon would run it unasked. */
  close(): void {
    for (const { mon, monitorPid } of this.pending.values()) {
      killMonitor(monitorPid);
      mon.sync.close();
      mon.attach?.close();
    }
    this.pending.clear();
  }
}
