import { EventEmitter } from 'node:events';
import { mkdir, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import {
  BerthError,
  Code,
  type ShimCreateRequest,
  type ShimKillRequest,
  type ShimState,
  type ShimTaskRef,
  type ShimWaitReply,
  type TaskExit,
} from '@berth/api';
import type { HostLayout, Redis, ServiceContext } from '@berth/kit';
import { spawnConmon } from '../runtime/conmon.js';
import { DirWatcher, monitorAlive, readIntFile } from '../runtime/monitor.js';
import { mountAll, unmountAll } from '../runtime/mounts.js';
import { Runc } from '../runtime/runc.js';
import { containerFilesDir, writeContainerFiles } from './container-files.js';
import { ExecProcesses } from './execs.js';
import { exists, mtimeOf, writeAtomic } from './files.js';
import { checkName, execPaths, namespacePaths, taskPaths } from './paths.js';
import { Reconciler } from './reconcile.js';
import { applySeccomp } from './seccomp/index.js';
import { prepareSpec } from './spec.js';
import { type ProcRecord, ShimStore } from './store.js';
import { normalizeSignal, procKey, runtimeFailure, until } from './util.js';

export { procKey } from './util.js';

type Logger = ServiceContext['log'];

/** What the agent needs from its host process; no NATS in here, events go through `publish`. */
export interface AgentOptions {
  redis: Redis;
  node: string;
  layout: HostLayout;
  log: Logger;
  /** Announces an event (topic `tasks.exit`); called only after the state is persisted. */
  publish: (topic: string, namespace: string, event: unknown) => void;
  conmon?: string;
  runc?: string;
  /** Bound on waiting for conmon's first answer (runc create), ms. */
  createTimeoutMs?: number;
}

/** The topic exits are announced on. */
export const EXIT_TOPIC = 'tasks.exit';

const MONITOR_GONE_WAIT_MS = 5_000;

/**
 * The shim agent's domain: tasks and exec processes run by runc under one conmon each. conmon is the
 * process's parent, holds its stdio, writes the CRI log and the exit file, and outlives this agent;
 * the agent records state in Redis, turns exit files into persisted exits then `tasks.exit` events,
 * and on start finds everything again from Redis and the files on disk.
 */
export class ShimAgent {
  readonly store: ShimStore;
  readonly layout: HostLayout;
  readonly log: Logger;
  readonly node: string;
  readonly conmon: string;
  readonly runcBinary: string;
  private readonly publish: AgentOptions['publish'];
  readonly createTimeoutMs: number;
  /** Emits procKey once an exit is persisted (wait's wake-up; persisted state is the truth). */
  readonly exited = new EventEmitter();
  private readonly nsWatchers = new Map<string, DirWatcher>();
  private readonly execWatchers = new Map<string, DirWatcher>();
  private readonly serials = new Map<string, Promise<unknown>>();
  private readonly runcs = new Map<string, Runc>();
  readonly execs: ExecProcesses;
  readonly reconciler: Reconciler;
  private closed = false;

  constructor(o: AgentOptions) {
    this.store = new ShimStore(o.redis, o.node);
    this.layout = o.layout;
    this.log = o.log;
    this.node = o.node;
    this.publish = o.publish;
    this.conmon = o.conmon ?? '/usr/bin/conmon';
    this.runcBinary = o.runc ?? '/usr/sbin/runc';
    this.createTimeoutMs = o.createTimeoutMs ?? 60_000;
    this.exited.setMaxListeners(0);
    this.execs = new ExecProcesses(this);
    this.reconciler = new Reconciler(this);
  }

  /** The runc driver of one namespace (each namespace has its own runc state root). */
  runc(ns: string): Runc {
    let r = this.runcs.get(ns);
    if (!r) {
      r = new Runc(namespacePaths(this.layout, ns).runcRoot, this.runcBinary);
      this.runcs.set(ns, r);
    }
    return r;
  }

  /** Runs fn after every earlier fn of the same key finished (one change at a time per process). */
  serial<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.serials.get(key) ?? Promise.resolve();
    const next = prev.then(fn, fn);
    const settled = next.catch(() => undefined);
    this.serials.set(key, settled);
    void settled.then(() => {
      if (this.serials.get(key) === settled) this.serials.delete(key);
    });
    return next;
  }

  /** The record of a task or exec, or NOT_FOUND naming it. */
  async mustGet(ref: ShimTaskRef): Promise<ProcRecord> {
    const r = await this.store.get(ref.namespace, ref.id, ref.execId);
    if (!r) {
      throw new BerthError(
        Code.NOT_FOUND,
        ref.execId
          ? `exec "${ref.execId}" of task "${ref.id}" not found in namespace "${ref.namespace}"`
          : `task "${ref.id}" not found in namespace "${ref.namespace}" on node "${this.node}"`,
      );
    }
    return r;
  }

  /** The wire state of a record; live ones carry the monitor's attach socket and control fifo. */
  toState(r: ProcRecord): ShimState {
    const s: ShimState = {
      namespace: r.namespace,
      id: r.id,
      status: r.status,
      pid: r.pid,
      logPath: r.logPath,
      bundle: r.dir,
      terminal: r.terminal,
      stdin: r.stdin,
      monitorPid: r.monitorPid,
      createdAt: r.createdAt,
    };
    if (r.execId) s.execId = r.execId;
    if (r.startedAt) s.startedAt = r.startedAt;
    if (r.exitCode !== undefined) s.exitCode = r.exitCode;
    if (r.exitedAt) s.exitedAt = r.exitedAt;
    if (r.reason) s.reason = r.reason;
    if (r.status !== 'stopped') {
      const p = r.execId
        ? execPaths(this.layout, r.namespace, r.id, r.execId)
        : taskPaths(this.layout, r.namespace, r.id);
      s.attachPath = p.attach;
      s.ctlPath = p.ctl;
    }
    return s;
  }

  // ---------------------------------------------------------------- exits

  /** Starts the inotify watch of a namespace's exit dir (idempotent); existing files are handled too. */
  async watchNamespace(ns: string): Promise<void> {
    if (this.nsWatchers.has(ns) || this.closed) return;
    const w = new DirWatcher(namespacePaths(this.layout, ns).exitDir, (name) => {
      if (name.startsWith('.')) return;
      void this.handleExit(ns, name).catch((err: unknown) =>
        this.log.error({ err, ns, id: name }, 'handling an exit failed'),
      );
    });
    this.nsWatchers.set(ns, w);
    await w.start();
  }

  /** Watches an exec's directory for conmon's `exit` file. */
  async watchExec(ns: string, id: string, execId: string): Promise<void> {
    const key = procKey(ns, id, execId);
    if (this.execWatchers.has(key) || this.closed) return;
    const w = new DirWatcher(execPaths(this.layout, ns, id, execId).dir, (name) => {
      if (name !== 'exit') return;
      void this.handleExit(ns, id, execId).catch((err: unknown) =>
        this.log.error({ err, ns, id, execId }, 'handling an exec exit failed'),
      );
    });
    this.execWatchers.set(key, w);
    await w.start();
  }

  unwatchExec(ns: string, id: string, execId: string): void {
    const key = procKey(ns, id, execId);
    this.execWatchers.get(key)?.close();
    this.execWatchers.delete(key);
  }

  /**
   * Turns conmon's exit file into a persisted exit, then announces it. Idempotent: inotify may
   * report a file twice and recovery reads it again; the exit is stored once and announced until
   * the announcement is marked done.
   */
  handleExit(ns: string, id: string, execId?: string): Promise<void> {
    return this.serial(`exit:${procKey(ns, id, execId)}`, async () => {
      const rec = await this.store.get(ns, id, execId);
      if (!rec) return;
      if (rec.status !== 'stopped') {
        const file = execId
          ? execPaths(this.layout, ns, id, execId).exitFile
          : taskPaths(this.layout, ns, id).exitFile;
        const code = await readIntFile(file);
        if (code === undefined) return;
        const oom = !execId && (await exists(taskPaths(this.layout, ns, id).oomFile));
        const exitedAt = (await mtimeOf(file)) ?? new Date().toISOString();
        await this.store.recordExit(ns, id, execId, {
          exitCode: code,
          exitedAt,
          ...(oom ? { reason: 'OOMKilled' } : {}),
        });
        if (execId) this.unwatchExec(ns, id, execId);
      }
      await this.announce(ns, id, execId);
    });
  }

  /** Wakes local waiters and publishes `tasks.exit` for a persisted, not yet announced exit. */
  async announce(ns: string, id: string, execId?: string): Promise<void> {
    const rec = await this.store.get(ns, id, execId);
    if (rec?.status !== 'stopped' || rec.exitCode === undefined) return;
    this.exited.emit(procKey(ns, id, execId));
    if (rec.exitPublished) return;
    const e: TaskExit = {
      namespace: ns,
      id,
      pid: rec.pid,
      exitCode: rec.exitCode,
      exitedAt: rec.exitedAt ?? new Date().toISOString(),
      node: this.node,
    };
    if (execId) e.execId = execId;
    if (rec.reason) e.reason = rec.reason;
    this.publish(EXIT_TOPIC, ns, e);
    await this.store.markPublished(ns, id, execId);
    this.log.info({ ns, id, execId, exitCode: e.exitCode, reason: e.reason }, 'process exited');
  }

  /** Records an exit the monitor could not write (it died, or the host restarted). */
  async recordLost(rec: ProcRecord, reason: string): Promise<void> {
    await this.store.recordExit(rec.namespace, rec.id, rec.execId, {
      exitCode: 255,
      exitedAt: new Date().toISOString(),
      reason,
    });
    await this.announce(rec.namespace, rec.id, rec.execId);
  }

  // ---------------------------------------------------------------- lifecycle

  /**
   * create: writes the bundle (config.json, rootfs mounted from the given mounts), starts conmon,
   * which runs `runc create`, and records the task once runc reported the init pid. On any failure
   * nothing is left behind: no bundle, no mount, no runc state, no record.
   */
  async create(req: ShimCreateRequest): Promise<ShimState> {
    const { namespace: ns, id } = req;
    checkName('namespace', ns);
    checkName('task id', id);
    if (req.logPath !== undefined && !req.logPath.startsWith('/')) {
      throw new BerthError(Code.INVALID_ARGUMENT, `task "${id}": logPath must be absolute`);
    }
    if (!(await this.store.reserveTask(ns, id))) {
      throw new BerthError(Code.ALREADY_EXISTS, `task "${id}" already exists in namespace "${ns}"`);
    }
    const p = taskPaths(this.layout, ns, id);
    const logPath =
      req.logPath ??
      (req.files ? join(containerFilesDir(this.layout, ns, id), 'container.log') : p.defaultLog);
    try {
      return await this.serial(procKey(ns, id), async () => {
        const t0 = performance.now();
        await this.removeBundle(ns, id);
        await mkdir(p.rootfs, { recursive: true });
        const { spec, warnings } = prepareSpec(req.spec, {
          ns,
          id,
          rootfs: req.rootfs.length ? p.rootfs : undefined,
          terminal: req.terminal,
        });
        for (const w of warnings) this.log.warn({ ns, id }, w);
        if (req.seccomp) await applySeccomp(spec, req.seccomp);
        await writeContainerFiles(this.layout, spec, { ns, id, files: req.files });
        const t1 = performance.now();
        if (req.rootfs.length) await mountAll(req.rootfs, p.rootfs);
        const t2 = performance.now();
        await writeAtomic(p.config, JSON.stringify(spec));
        await mkdir(dirname(logPath), { recursive: true });
        await mkdir(p.socketDir, { recursive: true });
        await this.watchNamespace(ns);
        await rm(join(p.exitDir, id), { force: true });
        const t3 = performance.now();
        const mon = spawnConmon({
          conmon: this.conmon,
          runc: this.runcBinary,
          runcRoot: p.runcRoot,
          cid: id,
          cuuid: p.cuuid,
          dir: p.bundle,
          pidFile: p.pidFile,
          conmonPidFile: p.conmonPidFile,
          logPath,
          persistDir: p.bundle,
          exitDir: p.exitDir,
          socketDir: p.socketDir,
          terminal: req.terminal,
          stdin: req.stdin,
          leaveStdinOpen: req.stdinOnce === false,
        });
        let pid: number;
        try {
          const msg = await mon.sync.next(this.createTimeoutMs);
          if (msg.data <= 0) throw runtimeFailure(`task "${id}": runc create failed`, msg.message);
          pid = msg.data;
        } finally {
          mon.sync.close();
        }
        const rec: ProcRecord = {
          namespace: ns,
          id,
          status: 'created',
          pid,
          monitorPid: (await readIntFile(p.conmonPidFile)) ?? 0,
          dir: p.bundle,
          logPath,
          terminal: req.terminal,
          stdin: req.stdin,
          createdAt: new Date().toISOString(),
        };
        if (req.stdin && req.stdinOnce === false) rec.stdinKeep = true;
        await writeAtomic(p.meta, JSON.stringify(rec));
        await this.store.put(rec);
        const ms = (a: number, b: number) => Math.round(b - a);
        const t4 = performance.now();
        this.log.info(
          {
            ns,
            id,
            pid,
            monitor: rec.monitorPid,
            ms: { prepare: ms(t0, t1), mount: ms(t1, t2), write: ms(t2, t3), monitor: ms(t3, t4) },
          },
          'task created',
        );
        return this.toState(rec);
      });
    } catch (err) {
      await this.removeBundle(ns, id).catch((e: unknown) =>
        this.log.error({ err: e, ns, id }, 'cleaning up a failed create failed'),
      );
      // Only the per-task default: a container's kept log holds its earlier runs.
      if (logPath === p.defaultLog) await rm(logPath, { force: true });
      await this.store.releaseTask(ns, id);
      throw err;
    }
  }

  /**
   * Removes everything a task left on disk: runc's state (killing what still runs), the rootfs
   * mounts, the bundle and the exit file. Unmounting comes first so a removal can never reach
   * into a snapshot through a live mount.
   */
  async removeBundle(ns: string, id: string): Promise<void> {
    const p = taskPaths(this.layout, ns, id);
    if (!(await exists(p.bundle))) return;
    await this.runc(ns).delete(id, true);
    const conmonPid = await readIntFile(p.conmonPidFile);
    if (conmonPid && (await monitorAlive(conmonPid))) {
      await until(async () => !(await monitorAlive(conmonPid)), MONITOR_GONE_WAIT_MS);
    }
    await unmountAll(p.rootfs);
    await rm(p.bundle, { recursive: true, force: true });
    await rm(join(p.exitDir, id), { force: true });
  }

  /** start: `runc start` of a created task, or lets a created exec run. */
  async start(ref: ShimTaskRef): Promise<ShimState> {
    if (ref.execId) return this.execs.start(ref as ShimTaskRef & { execId: string });
    return this.serial(procKey(ref.namespace, ref.id), async () => {
      const rec = await this.mustGet(ref);
      if (rec.status !== 'created') {
        throw new BerthError(Code.FAILED_PRECONDITION, `task "${ref.id}" is ${rec.status}, not created`);
      }
      await this.runc(ref.namespace).start(ref.id);
      const startedAt = new Date().toISOString();
      await this.store.transition(ref.namespace, ref.id, undefined, 'created', 'running', { startedAt });
      return this.toState(await this.mustGet(ref));
    });
  }

  async state(ref: ShimTaskRef): Promise<ShimState> {
    return this.toState(await this.mustGet(ref));
  }

  /** Every task on this node (in one namespace, or all). */
  async list(ns?: string): Promise<ShimState[]> {
    const out: ShimState[] = [];
    for (const r of await this.store.taskRefs()) {
      if (ns && r.namespace !== ns) continue;
      const rec = await this.store.get(r.namespace, r.id);
      if (rec) out.push(this.toState(rec));
    }
    return out;
  }

  /**
   * kill: a signal to the task's init (or all its processes) or to an exec. A process that has
   * already exited is not an error (delivered: false), so `rm -f` can always kill first.
   */
  async kill(req: ShimKillRequest): Promise<{ delivered: boolean }> {
    const signal = normalizeSignal(req.signal);
    const rec = await this.mustGet(req);
    if (rec.status === 'stopped') return { delivered: false };
    if (req.execId) {
      if (rec.status === 'created' || rec.pid <= 0) {
        throw new BerthError(Code.FAILED_PRECONDITION, `exec "${req.execId}" has not been started`);
      }
      try {
        process.kill(rec.pid, signal);
        return { delivered: true };
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ESRCH') return { delivered: false };
        throw err;
      }
    }
    try {
      await this.runc(req.namespace).kill(req.id, signal, req.all);
    } catch (err) {
      if (err instanceof BerthError && err.code === Code.NOT_FOUND) return { delivered: false };
      throw err;
    }
    if (rec.status === 'paused') {
      // A frozen cgroup holds the signal pending: thaw it so the signal acts (rm -f of a paused task).
      await this.serial(procKey(req.namespace, req.id), async () => {
        await this.runc(req.namespace)
          .resume(req.id)
          .catch((err: unknown) => {
            // runc kill --all thaws by itself ("not paused" then); a task gone is fine too.
            const benign =
              err instanceof BerthError && (err.code === Code.NOT_FOUND || /not paused/.test(err.message));
            if (!benign) throw err;
          });
        await this.store.transition(req.namespace, req.id, undefined, 'paused', 'running');
      });
    }
    return { delivered: true };
  }

  /**
   * wait: resolves once the exit is persisted. It listens first and reads the record second, so an
   * exit landing in between is never missed.
   */
  wait(ref: ShimTaskRef, signal?: AbortSignal): Promise<ShimWaitReply> {
    const key = procKey(ref.namespace, ref.id, ref.execId);
    return new Promise<ShimWaitReply>((resolve, reject) => {
      let done = false;
      const finish = (fn: () => void) => {
        if (done) return;
        done = true;
        this.exited.off(key, check);
        signal?.removeEventListener('abort', onAbort);
        fn();
      };
      const check = () => {
        this.mustGet(ref).then(
          (r) => {
            if (r.status !== 'stopped' || r.exitCode === undefined) return;
            const out: ShimWaitReply = { exitCode: r.exitCode, exitedAt: r.exitedAt ?? '' };
            if (r.reason) out.reason = r.reason;
            finish(() => resolve(out));
          },
          (err: unknown) => finish(() => reject(err)),
        );
      };
      const onAbort = () =>
        finish(() =>
          reject(new BerthError(Code.CANCELLED, `wait for "${ref.id}" cancelled: agent stopping`)),
        );
      this.exited.on(key, check);
      signal?.addEventListener('abort', onAbort);
      check();
    });
  }

  /**
   * delete: removes a stopped (or never started) task: runc state, monitor, mounts, bundle, default
   * log and records. A running or paused task is refused: kill it and wait first.
   */
  async delete(ref: ShimTaskRef): Promise<ShimState> {
    if (ref.execId) return this.execs.delete(ref as ShimTaskRef & { execId: string });
    const { namespace: ns, id } = ref;
    return this.serial(procKey(ns, id), async () => {
      let rec = await this.mustGet(ref);
      if (rec.status === 'running' || rec.status === 'paused') {
        throw new BerthError(
          Code.FAILED_PRECONDITION,
          `task "${id}" is ${rec.status}: kill it and wait for its exit before deleting`,
        );
      }
      if (rec.status !== 'stopped') {
        // created (or unknown): runc kills the init; conmon then records that exit.
        await this.runc(ns).delete(id, true);
        const exited = await until(async () => {
          await this.handleExit(ns, id);
          return (await this.store.get(ns, id))?.status === 'stopped';
        }, MONITOR_GONE_WAIT_MS);
        if (!exited) await this.recordLost(rec, 'Deleted');
        rec = await this.mustGet(ref);
      }
      for (const execId of await this.store.execIds(ns, id)) await this.execs.drop(ns, id, execId);
      await this.removeBundle(ns, id);
      if (rec.logPath === taskPaths(this.layout, ns, id).defaultLog) await rm(rec.logPath, { force: true });
      await this.store.removeTask(ns, id);
      this.log.info({ ns, id }, 'task deleted');
      return this.toState(rec);
    });
  }

  /**
   * remove-files: removes a container's generated files and kept log on this node, once it has no
   * task here (the task-service calls it when the container is removed). Absent is fine.
   */
  async removeFiles(ref: ShimTaskRef): Promise<void> {
    const { namespace: ns, id } = ref;
    checkName('namespace', ns);
    checkName('task id', id);
    await this.serial(procKey(ns, id), async () => {
      const rec = await this.store.get(ns, id);
      if (rec) {
        throw new BerthError(
          Code.FAILED_PRECONDITION,
          `task "${id}" still exists (${rec.status}): delete it before removing its files`,
        );
      }
      await rm(containerFilesDir(this.layout, ns, id), { recursive: true, force: true });
    });
  }

  /** exec: prepares a process in a running task; `start` with its execId runs it. */
  exec(req: Parameters<ExecProcesses['create']>[0]): Promise<ShimState> {
    return this.execs.create(req);
  }

  /** Finds every task again after a (re)start (see Reconciler.recover). */
  recover(): ReturnType<Reconciler['recover']> {
    return this.reconciler.recover();
  }

  /** Reconciles live tasks every intervalMs until close(). */
  startSweeper(intervalMs: number): void {
    this.reconciler.startSweeper(intervalMs);
  }

  /** Stops watching; containers and their monitors keep running. */
  async close(): Promise<void> {
    this.closed = true;
    this.reconciler.stop();
    for (const w of this.nsWatchers.values()) w.close();
    for (const w of this.execWatchers.values()) w.close();
    this.nsWatchers.clear();
    this.execWatchers.clear();
    this.execs.close();
  }
}
