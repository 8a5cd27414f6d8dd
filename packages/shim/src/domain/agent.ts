import { EventEmitter } from 'node:events';
import { mkdir, readdir, rm } from 'node:fs/promises';
import { constants } from 'node:os';
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

type Logger = ServiceContext['log'];

import { type SpawnedMonitor, spawnConmon } from '../runtime/conmon.js';
import { DirWatcher, monitorAlive, readIntFile } from '../runtime/monitor.js';
import { mountAll, unmountAll } from '../runtime/mounts.js';
import { Runc } from '../runtime/runc.js';
import { exists, mtimeOf, writeAtomic } from './files.js';
import { checkName, execPaths, taskPaths } from './paths.js';
import { prepareSpec } from './spec.js';
import { type ProcRecord, ShimStore } from './store.js';

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

/** Process key for in-memory maps: "<ns>/<id>" or "<ns>/<id>/<execId>". */
export function procKey(ns: string, id: string, execId?: string): string {
  return execId ? `${ns}/${id}/${execId}` : `${ns}/${id}`;
}

/** Waits until cond() holds, checking every intervalMs, for at most timeoutMs; returns cond's last value. */
export async function until(
  cond: () => Promise<boolean>,
  timeoutMs: number,
  intervalMs = 10,
): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await cond()) return true;
    if (Date.now() >= deadline) return false;
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** Extracts runc's message from the text conmon relays (runc's logrus line or plain text). */
function runtimeMessage(text: string | undefined): string {
  const t = (text ?? '').trim();
  const m = /msg="((?:[^"\\]|\\.)*)"/.exec(t);
  return (m?.[1] ?? t).replace(/\\"/g, '"').replace(/\\n/g, ' ') || 'unknown error';
}

/** A failed runc create/exec as a BerthError: a missing command is bad input, the rest a precondition. */
export function runtimeFailure(what: string, text: string | undefined): BerthError {
  const msg = runtimeMessage(text);
  const code = /executable file not found|no such file or directory|permission denied/i.test(msg)
    ? Code.INVALID_ARGUMENT
    : Code.FAILED_PRECONDITION;
  return new BerthError(code, `${what}: ${msg}`);
}

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
  private readonly createTimeoutMs: number;
  /** Emits procKey once an exit is persisted (wait's wake-up; persisted state is the truth). */
  readonly exited = new EventEmitter();
  private readonly nsWatchers = new Map<string, DirWatcher>();
  private readonly execWatchers = new Map<string, DirWatcher>();
  private readonly serials = new Map<string, Promise<unknown>>();
  private readonly runcs = new Map<string, Runc>();
  /** Exec monitors spawned by this agent and waiting for `start` (their pipes live here). */
  readonly pendingExecs = new Map<string, { mon: SpawnedMonitor; monitorPid: number }>();
  private closed = false;
  private sweeper: NodeJS.Timeout | undefined;

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
  }

  /** The runc driver of one namespace (each namespace has its own runc state root). */
  runc(ns: string): Runc {
    let r = this.runcs.get(ns);
    if (!r) {
      r = new Runc(taskPaths(this.layout, ns, 'x').runcRoot, this.runcBinary);
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
    const w = new DirWatcher(taskPaths(this.layout, ns, 'x').exitDir, (name) => {
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

  private unwatchExec(ns: string, id: string, execId: string): void {
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
  private async recordLost(rec: ProcRecord, reason: string): Promise<void> {
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
    const logPath = req.logPath ?? p.defaultLog;
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
      if (!req.logPath) await rm(logPath, { force: true });
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
    if (ref.execId) return this.startExec(ref as ShimTaskRef & { execId: string });
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
      return { delivered: true };
    } catch (err) {
      if (err instanceof BerthError && err.code === Code.NOT_FOUND) return { delivered: false };
      throw err;
    }
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
    if (ref.execId) return this.deleteExec(ref as ShimTaskRef & { execId: string });
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
      for (const execId of await this.store.execIds(ns, id)) await this.dropExec(ns, id, execId);
      await this.removeBundle(ns, id);
      if (rec.logPath === taskPaths(this.layout, ns, id).defaultLog) await rm(rec.logPath, { force: true });
      await this.store.removeTask(ns, id);
      this.log.info({ ns, id }, 'task deleted');
      return this.toState(rec);
    });
  }

  // ---------------------------------------------------------------- exec

  /**
   * exec: prepares a new process in a running task. conmon (exec mode) sets up the process's log,
   * exit file and attach socket and then waits; `start` with the execId lets runc exec run, so a
   * client can attach before any output is written.
   */
  async exec(req: {
    namespace: string;
    id: string;
    execId: string;
    process: Record<string, unknown>;
    terminal: boolean;
    stdin: boolean;
  }): Promise<ShimState> {
    const { namespace: ns, id, execId } = req;
    checkName('exec id', execId);
    const task = await this.mustGet({ namespace: ns, id });
    if (task.status !== 'running') {
      throw new BerthError(Code.FAILED_PRECONDITION, `task "${id}" is ${task.status}: exec needs it running`);
    }
    const args = req.process.args;
    if (!Array.isArray(args) || args.length === 0) {
      throw new BerthError(Code.INVALID_ARGUMENT, `exec "${execId}": process.args must name a command`);
    }
    if (!(await this.store.reserveExec(ns, id, execId))) {
      throw new BerthError(Code.ALREADY_EXISTS, `exec "${execId}" already exists in task "${id}"`);
    }
    const tp = taskPaths(this.layout, ns, id);
    const ep = execPaths(this.layout, ns, id, execId);
    try {
      await rm(ep.dir, { recursive: true, force: true });
      await mkdir(ep.dir, { recursive: true });
      await writeAtomic(ep.spec, JSON.stringify({ ...req.process, terminal: req.terminal }));
      const mon = spawnConmon({
        conmon: this.conmon,
        runc: this.runcBinary,
        runcRoot: tp.runcRoot,
        cid: id,
        cuuid: ep.cuuid,
        dir: ep.dir,
        pidFile: ep.pidFile,
        conmonPidFile: ep.conmonPidFile,
        logPath: ep.log,
        persistDir: ep.dir,
        socketDir: tp.socketDir,
        terminal: req.terminal,
        stdin: req.stdin,
        execSpec: ep.spec,
      });
      const key = procKey(ns, id, execId);
      try {
        const ready = await mon.attach?.next(this.createTimeoutMs);
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
        monitorPid: (await readIntFile(ep.conmonPidFile)) ?? 0,
        dir: ep.dir,
        logPath: ep.log,
        terminal: req.terminal,
        stdin: req.stdin,
        createdAt: new Date().toISOString(),
      };
      await this.store.put(rec);
      this.pendingExecs.set(key, { mon, monitorPid: rec.monitorPid });
      return this.toState(rec);
    } catch (err) {
      await rm(ep.dir, { recursive: true, force: true });
      await this.store.releaseExec(ns, id, execId);
      throw err;
    }
  }

  private async startExec(ref: ShimTaskRef & { execId: string }): Promise<ShimState> {
    const { namespace: ns, id, execId } = ref;
    const key = procKey(ns, id, execId);
    return this.serial(key, async () => {
      const rec = await this.mustGet(ref);
      if (rec.status !== 'created') {
        throw new BerthError(Code.FAILED_PRECONDITION, `exec "${execId}" is ${rec.status}, not created`);
      }
      const mon = this.pendingExecs.get(key)?.mon;
      if (!mon?.start) {
        throw new BerthError(
          Code.FAILED_PRECONDITION,
          `exec "${execId}" was prepared by an earlier shim agent and cannot be started: delete it and exec again`,
        );
      }
      this.pendingExecs.delete(key);
      await this.watchExec(ns, id, execId);
      let pid: number;
      try {
        mon.start.write('1');
        const msg = await mon.sync.next(this.createTimeoutMs);
        if (msg.data <= 0) {
          const err = runtimeFailure(`exec "${execId}" in task "${id}" failed`, msg.message);
          await this.store.recordExit(ns, id, execId, {
            exitCode: err.code === Code.INVALID_ARGUMENT ? 127 : 126,
            exitedAt: new Date().toISOString(),
            reason: 'StartFailed',
          });
          this.unwatchExec(ns, id, execId);
          await this.announce(ns, id, execId);
          throw err;
        }
        pid = msg.data;
      } finally {
        mon.sync.close();
        mon.attach?.close();
        mon.start.destroy();
      }
      await this.store.transition(ns, id, execId, 'created', 'running', {
        pid: String(pid),
        startedAt: new Date().toISOString(),
      });
      // An exit may have been handled before the pid was stored: handle again (idempotent).
      await this.handleExit(ns, id, execId);
      return this.toState(await this.mustGet(ref));
    });
  }

  /** Ends an exec's monitor if it still runs and forgets the exec. */
  private async dropExec(ns: string, id: string, execId: string): Promise<void> {
    const key = procKey(ns, id, execId);
    const pending = this.pendingExecs.get(key);
    if (pending) {
      killMonitor(pending.monitorPid);
      pending.mon.sync.close();
      pending.mon.attach?.close();
      pending.mon.start?.destroy();
      this.pendingExecs.delete(key);
    }
    const rec = await this.store.get(ns, id, execId);
    if (rec?.monitorPid && (await monitorAlive(rec.monitorPid))) killMonitor(rec.monitorPid);
    this.unwatchExec(ns, id, execId);
    await rm(execPaths(this.layout, ns, id, execId).dir, { recursive: true, force: true });
    await this.store.releaseExec(ns, id, execId);
  }

  private async deleteExec(ref: ShimTaskRef & { execId: string }): Promise<ShimState> {
    const { namespace: ns, id, execId } = ref;
    return this.serial(procKey(ns, id, execId), async () => {
      const rec = await this.mustGet(ref);
      if (rec.status === 'running') {
        throw new BerthError(Code.FAILED_PRECONDITION, `exec "${execId}" is running: kill it first`);
      }
      await this.dropExec(ns, id, execId);
      return this.toState(rec);
    });
  }

  // ---------------------------------------------------------------- recovery

  /**
   * Finds every task again after a (re)start: watches each namespace's exit dir (which also
   * handles exit files written while no agent ran), records exits whose monitor vanished without
   * one, re-announces persisted exits never announced, and removes what a create that crashed
   * half-way left on disk.
   */
  async recover(): Promise<{ tasks: number; exited: number; cleaned: number }> {
    let tasks = 0;
    let exited = 0;
    let cleaned = 0;
    const known = new Set<string>();
    for (const { namespace: ns, id } of await this.store.taskRefs()) {
      known.add(procKey(ns, id));
      const rec = await this.store.get(ns, id);
      if (!rec) {
        // Claimed but never recorded: a create that died half-way.
        await this.removeBundle(ns, id);
        await this.store.releaseTask(ns, id);
        cleaned++;
        continue;
      }
      tasks++;
      await this.watchNamespace(ns);
      const before = rec.status;
      await this.serial(procKey(ns, id), () => this.reconcile(ns, id, true));
      if (before !== 'stopped' && (await this.store.get(ns, id))?.status === 'stopped') exited++;
    }
    for (const ns of await readdir(this.layout.tasks).catch(() => [] as string[])) {
      for (const id of await readdir(join(this.layout.tasks, ns)).catch(() => [] as string[])) {
        if (known.has(procKey(ns, id))) continue;
        this.log.warn({ ns, id }, 'removing a bundle no record claims (a create interrupted by a crash)');
        await this.removeBundle(ns, id);
        cleaned++;
      }
    }
    return { tasks, exited, cleaned };
  }

  /**
   * Brings one task's record in line with what is on the host: an exit file not yet recorded is
   * recorded; a monitor gone without one means exit 255 (`MonitorLost`) once runc no longer runs the
   * task (while runc still does, the task is `unknown`: nothing can see its exit); a persisted exit
   * never announced is announced. The same for its execs.
   */
  private async reconcile(ns: string, id: string, startup: boolean): Promise<void> {
    await this.handleExit(ns, id);
    let now = await this.store.get(ns, id);
    if (now && now.status !== 'stopped' && !(await monitorAlive(now.monitorPid))) {
      // conmon writes the exit file just before it exits: read again now that it is gone.
      await this.handleExit(ns, id);
      now = await this.store.get(ns, id);
      if (now && now.status !== 'stopped') {
        const rs = await this.runc(ns).state(id);
        if (!rs || rs.status === 'stopped') await this.recordLost(now, 'MonitorLost');
        else if (now.status !== 'unknown') {
          this.log.error(
            { ns, id, runc: rs.status },
            'monitor of a live task is gone: its exit cannot be seen',
          );
          await this.store.transition(ns, id, undefined, now.status, 'unknown');
        }
      }
    }
    for (const execId of await this.store.execIds(ns, id)) await this.reconcileExec(ns, id, execId, startup);
  }

  private async reconcileExec(ns: string, id: string, execId: string, startup: boolean): Promise<void> {
    const rec = await this.store.get(ns, id, execId);
    if (!rec) {
      if (startup) await this.store.releaseExec(ns, id, execId);
      return;
    }
    if (rec.status === 'stopped') {
      await this.announce(ns, id, execId);
      return;
    }
    if (rec.status === 'created') {
      // Prepared by this agent: it waits for start. Prepared by a dead agent: its start pipe is
      // gone and conmon would run it unasked, so it is ended.
      if (!startup) return;
      if (await monitorAlive(rec.monitorPid)) killMonitor(rec.monitorPid);
      await this.handleExit(ns, id, execId);
      if ((await this.store.get(ns, id, execId))?.status !== 'stopped')
        await this.recordLost(rec, 'AgentRestarted');
      return;
    }
    await this.watchExec(ns, id, execId);
    await this.handleExit(ns, id, execId);
    const now = await this.store.get(ns, id, execId);
    if (now && now.status !== 'stopped' && !(await monitorAlive(now.monitorPid))) {
      await this.handleExit(ns, id, execId);
      if ((await this.store.get(ns, id, execId))?.status !== 'stopped')
        await this.recordLost(now, 'MonitorLost');
    }
  }

  /**
   * One pass over every live task while the agent runs: catches what inotify cannot (a monitor
   * killed before it wrote an exit file, an overflowed inotify queue).
   */
  async sweep(): Promise<void> {
    for (const { namespace: ns, id } of await this.store.taskRefs()) {
      if (this.closed) return;
      const rec = await this.store.get(ns, id);
      if (!rec) continue; // a create in progress
      if (rec.status === 'stopped' && rec.exitPublished) continue;
      await this.serial(procKey(ns, id), () => this.reconcile(ns, id, false));
    }
  }

  /** Runs sweep() every intervalMs until close(). */
  startSweeper(intervalMs: number): void {
    const tick = () => {
      if (this.closed) return;
      this.sweep()
        .catch((err: unknown) => this.log.error({ err }, 'sweep failed'))
        .finally(() => {
          if (!this.closed) this.sweeper = setTimeout(tick, intervalMs).unref();
        });
    };
    this.sweeper = setTimeout(tick, intervalMs).unref();
  }

  /** Stops watching; containers and their monitors keep running. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.sweeper) clearTimeout(this.sweeper);
    for (const w of this.nsWatchers.values()) w.close();
    for (const w of this.execWatchers.values()) w.close();
    this.nsWatchers.clear();
    this.execWatchers.clear();
    // A prepared exec must not run unasked once its start pipe closes: end its monitor.
    for (const { mon, monitorPid } of this.pendingExecs.values()) {
      killMonitor(monitorPid);
      mon.sync.close();
      mon.attach?.close();
    }
    this.pendingExecs.clear();
  }
}

/** SIGKILLs a monitor by pid (a prepared exec that must not run); gone already is fine. */
function killMonitor(pid: number | undefined): void {
  if (!pid || pid <= 0) return;
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

/** Signal names as runc and process.kill both take them: "SIGTERM"; numbers stay numbers. */
export function normalizeSignal(s: string | number): NodeJS.Signals | number {
  if (typeof s === 'number') return s;
  if (/^\d+$/.test(s)) return Number(s);
  const up = s.toUpperCase();
  const name = (up.startsWith('SIG') ? up : `SIG${up}`) as NodeJS.Signals;
  if (!Object.hasOwn(constants.signals, name)) {
    throw new BerthError(Code.INVALID_ARGUMENT, `unknown signal "${s}"`);
  }
  return name;
}
