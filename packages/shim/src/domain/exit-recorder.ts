import { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import { BerthError, Code, type ShimTaskRef, type ShimWaitReply, type TaskExit } from '@berth/api';
import { inTraceOf, linkedSpan, traceIdOfTraceparent, withSpan } from '@berth/kit/tracing';
import { shimMetrics } from '../metrics.js';
import { oomKillsOf } from '../runtime/cgroups.js';
import { DirWatcher, readIntFile } from '../runtime/monitor.js';
import { hasShareableShm, unmountShareableShm } from './container-shm.js';
import { exists, mtimeOf } from './files.js';
import type { AgentOptions, ShimHost } from './host.js';
import { execPaths, namespacePaths, taskPaths } from './paths.js';
import { allows } from './process-state.js';
import type { ProcRecord } from './store.js';
import { procKey } from './util.js';

/** The topic exits are announced on. */
export const EXIT_TOPIC = 'tasks.exit';

/**
 * Turns conmon's exit files into persisted exits, then `tasks.exit` events, in that order: core NATS
 * may lose the event, never the exit. Also wakes local waiters, and watches the exit files (one
 * inotify watch per namespace for tasks, one per exec directory).
 */
export class ExitRecorder {
  /** Emits procKey once an exit is persisted (wait's wake-up; persisted state is the truth). */
  private readonly exited = new EventEmitter();
  private readonly nsWatchers = new Map<string, DirWatcher>();
  private readonly execWatchers = new Map<string, DirWatcher>();
  private closed = false;

  constructor(
    private readonly host: ShimHost,
    private readonly publish: AgentOptions['publish'],
  ) {
    this.exited.setMaxListeners(0);
  }

  /** Starts the inotify watch of a namespace's exit dir (idempotent); existing files are handled too. */
  async watchNamespace(ns: string): Promise<void> {
    if (this.nsWatchers.has(ns) || this.closed) return;
    const w = new DirWatcher(namespacePaths(this.host.layout, ns).exitDir, (name) => {
      if (name.startsWith('.')) return;
      void this.handleExit(ns, name).catch((err: unknown) =>
        this.host.log.error({ err, ns, id: name }, 'handling an exit failed'),
      );
    });
    this.nsWatchers.set(ns, w);
    // Outside any trace: its callbacks would otherwise run in the request that set it up.
    await inTraceOf(undefined, () => w.start());
  }

  /** Watches an exec's persist directory for conmon's `exit` file. */
  async watchExec(ns: string, id: string, execId: string): Promise<void> {
    const key = procKey(ns, id, execId);
    if (this.execWatchers.has(key) || this.closed) return;
    // Its persist dir, where conmon writes `exit` (an exec of an older shim writes it to its exec
    // dir, which the sweep reads).
    const w = new DirWatcher(execPaths(this.host.layout, ns, id, execId).persistDir, (name) => {
      if (name !== 'exit') return;
      void this.handleExit(ns, id, execId).catch((err: unknown) =>
        this.host.log.error({ err, ns, id, execId }, 'handling an exec exit failed'),
      );
    });
    this.execWatchers.set(key, w);
    // Outside any trace: its callbacks would otherwise run in the request that set it up.
    await inTraceOf(undefined, () => w.start());
  }

  /** Stops watching an exec's directory (its exit is recorded, or it is dropped). */
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
    return this.host.serial(`exit:${procKey(ns, id, execId)}`, async () => {
      const tp = taskPaths(this.host.layout, ns, id);
      const paths = execId ? execPaths(this.host.layout, ns, id, execId) : tp;
      // Every exit waits on these steps (a `run --rm` on all of them): the record and the exit
      // file are read at once, then the OOM marks and the file's time, each a thread-pool trip.
      const [rec, exitCode] = await Promise.all([
        this.host.store.get(ns, id, execId),
        readIntFile(paths.exitFile),
      ]);
      if (!rec) return;
      let recorded: ProcRecord | undefined;
      if (allows(execId ? 'exec' : 'task', rec.status, 'exit')) {
        // A process started by an older shim has its exit file in its bundle or exec dir.
        let file = paths.exitFile;
        let code = exitCode;
        if (code === undefined) {
          file = paths.legacyExitFile;
          code = await readIntFile(file);
        }
        if (code === undefined) return;
        const [oom, oldOom, mtime] = await Promise.all([
          !execId && exists(tp.oomFile),
          !execId && exists(tp.legacyOomFile),
          mtimeOf(file),
        ]);
        // conmon's marker, else the cgroup's own count: conmon up to 2.2.1 watches the wrong file
        // on a cgroup v2 host that also mounts a v1 hierarchy (it takes the first line of
        // /proc/<pid>/cgroup, a v1 one there) and never writes the marker.
        const oomKilled = oom || oldOom || (!execId && (await cgroupSawOom(tp.config)));
        recorded = await this.host.store.recordExit(ns, id, execId, {
          exitCode: code,
          exitedAt: mtime ?? new Date().toISOString(),
          ...(oomKilled ? { reason: 'OOMKilled' } : {}),
        });
        if (execId) this.unwatchExec(ns, id, execId);
      }
      await this.announce(ns, id, execId, recorded);
      if (recorded && !execId) this.releaseShm(ns, id);
    });
  }

  /**
   * Unmounts the shareable /dev/shm of a container whose task exited (a CRI pod's when its pause
   * stops), as containerd does at StopPodSandbox and docker at a container's stop: what was written
   * there is not held in memory for as long as the stopped container is kept. Containers still
   * running keep their binds of it; a next task of the container mounts a fresh one. Under the
   * task's own serial key, after the announcement: a create or remove-files of the task waits for
   * it, and one that began meanwhile (a task no longer stopped) keeps it. A failure is logged;
   * remove-files tries again.
   */
  private releaseShm(ns: string, id: string): void {
    const { layout } = this.host;
    // Looked for before the task's queue is joined: a container without one (most) puts nothing
    // ahead of its delete there, which a `run --rm` waits for.
    const release = async () => {
      if (!(await hasShareableShm(layout, ns, id))) return;
      await this.host.serial(procKey(ns, id), async () => {
        const rec = await this.host.store.get(ns, id);
        if (rec && rec.status !== 'stopped') return;
        await unmountShareableShm(layout, ns, id);
      });
    };
    void release().catch((err: unknown) =>
      this.host.log.warn({ err, ns, id }, "unmounting an exited task's shareable /dev/shm failed"),
    );
  }

  /**
   * Records an exit nobody saw in a file (the monitor died, the host restarted, the exec never
   * started) with the given code and reason, then announces it. A record already stopped keeps
   * its first exit.
   */
  async recordExit(rec: ProcRecord, e: { exitCode: number; reason: string }): Promise<void> {
    let recorded: ProcRecord | undefined;
    if (allows(rec.execId ? 'exec' : 'task', rec.status, 'exit')) {
      recorded = await this.host.store.recordExit(rec.namespace, rec.id, rec.execId, {
        exitCode: e.exitCode,
        exitedAt: new Date().toISOString(),
        reason: e.reason,
      });
    }
    if (rec.execId) this.unwatchExec(rec.namespace, rec.id, rec.execId);
    await this.announce(rec.namespace, rec.id, rec.execId, recorded);
  }

  /** Records an exit the monitor could not write (exit 255 with the reason). */
  recordLost(rec: ProcRecord, reason: string): Promise<void> {
    return this.recordExit(rec, { exitCode: 255, reason });
  }

  /**
   * Wakes local waiters and publishes `tasks.exit` for a persisted, not yet announced exit:
   * `recorded` is the record as the exit's recording left it, else it is read.
   */
  async announce(ns: string, id: string, execId?: string, recorded?: ProcRecord): Promise<void> {
    const rec = recorded ?? (await this.host.store.get(ns, id, execId));
    if (rec?.status !== 'stopped' || rec.exitCode === undefined) return;
    this.exited.emit(procKey(ns, id, execId));
    if (rec.exitPublished) return;
    const e: TaskExit = {
      namespace: ns,
      id,
      pid: rec.pid,
      exitCode: rec.exitCode,
      exitedAt: rec.exitedAt ?? new Date().toISOString(),
      node: this.host.node,
    };
    if (execId) e.execId = execId;
    if (rec.reason) e.reason = rec.reason;
    // The exit belongs to the trace of what caused it: the latest kill request (`berth stop`
    // waits for it there), else the request that started the process (`berth run` waits for it
    // there). Announced in a span of that trace, the event carries its context; when a kill
    // caused it, the start's trace shows the exit too, in a span linked to the announcement.
    const cause = rec.killTraceparent ?? rec.traceparent;
    const alsoIn =
      rec.killTraceparent &&
      rec.traceparent &&
      traceIdOfTraceparent(rec.killTraceparent) !== traceIdOfTraceparent(rec.traceparent)
        ? rec.traceparent
        : undefined;
    const name = execId ? 'exec exit' : 'task exit';
    const attrs = {
      'berth.namespace': ns,
      'berth.container.id': id,
      ...(execId ? { 'berth.exec.id': execId } : {}),
      'process.exit.code': e.exitCode,
      ...(e.reason ? { 'berth.exit.reason': e.reason } : {}),
    };
    await inTraceOf(cause, () =>
      withSpan(name, attrs, async () => {
        if (alsoIn) linkedSpan(name, attrs, alsoIn);
        this.publish(EXIT_TOPIC, ns, e);
        await this.host.store.markPublished(ns, id, execId);
        shimMetrics().exit(execId ? 'exec' : 'task', e.exitCode, e.reason);
        this.host.log.info({ ns, id, execId, exitCode: e.exitCode, reason: e.reason }, 'process exited');
      }),
    );
  }

  /**
   * Resolves once the exit is persisted. It listens first and reads the record second, so an exit
   * landing in between is never missed.
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
        this.host.mustGet(ref).then(
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

  /** Stops every watch; monitors keep running and keep writing exit files. */
  close(): void {
    this.closed = true;
    for (const w of this.nsWatchers.values()) w.close();
    for (const w of this.execWatchers.values()) w.close();
    this.nsWatchers.clear();
    this.execWatchers.clear();
  }
}

/**
 * Whether the OOM killer ended a process in the cgroup of the task whose bundle config is at
 * `config` (read before `runc delete` removes the cgroup). False when either cannot be read.
 */
async function cgroupSawOom(config: string): Promise<boolean> {
  try {
    // Inline: a few KiB in the page cache, less than a thread-pool trip on the exit's path.
    const spec = JSON.parse(readFileSync(config, 'utf8')) as { linux?: { cgroupsPath?: unknown } };
    const path = spec.linux?.cgroupsPath;
    return typeof path === 'string' && ((await oomKillsOf(path)) ?? 0) > 0;
  } catch {
    return false;
  }
}
