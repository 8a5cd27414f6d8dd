import {
  AUTO_REMOVE_LABEL,
  BerthError,
  CONTAINER_ID_PATTERN,
  Code,
  type Container,
  type CreateContainerRequest,
  type CreateTaskReply,
  type ExecRequest,
  type ExitStatus,
  errors,
  exitReason,
  type KillRequest,
  type ProcessState,
  podAddresses,
  type Resources,
  type RunContainerReply,
  SHIM_FILE_SOURCE,
  type ShimContainerFiles,
  type ShimPidsReply,
  type ShimResolvedProcess,
  type ShimState,
  type ShimStats,
  START_MARGIN_MS,
  type Task,
  type TaskExit,
  TaskTopic,
} from '@berth/api';
import { type ServiceContext, settleWithin, withResolvedProcess } from '@berth/kit';
import { ignoring, releaseNetworkMeanwhile } from '../containers/collect.js';
import { FreeRetries } from '../containers/free-retries.js';
import type { ContainerManager } from '../containers/manager.js';
import { ignoreGone } from '../containers/manager.js';
import type { Deps } from '../deps.js';
import {
  apparmorOf,
  capabilitiesOf,
  hostDevicesOf,
  linuxResources,
  mergeEnv,
  mergeResources,
  provisionalUser,
  resolvConf,
  seccompOf,
} from '../spec/index.js';
import type { ContainerStore } from '../store/store.js';
import { ExitWaiters } from './exits.js';
import { type ReconcileResult, reconcileAll } from './reconcile.js';

type Logger = ServiceContext['log'];

/** Bound on how long a forced removal waits for SIGKILL to take effect. */
const FORCE_KILL_WAIT_MS = 10_000;

function toProcessState(s: ShimState): ProcessState {
  const out: ProcessState = { id: s.id, status: s.status, pid: s.pid };
  if (s.execId) out.execId = s.execId;
  if (s.exitCode !== undefined) out.exitCode = s.exitCode;
  if (s.exitedAt) out.exitedAt = s.exitedAt;
  if (s.reason) out.reason = s.reason;
  if (s.logPath) out.logPath = s.logPath;
  if (s.attachPath) out.attachPath = s.attachPath;
  if (s.ctlPath) out.ctlPath = s.ctlPath;
  return out;
}

function taskState(t: Task): ProcessState {
  const out: ProcessState = { id: t.id, status: t.status, pid: t.pid };
  if (t.exitCode !== undefined) out.exitCode = t.exitCode;
  if (t.exitedAt) out.exitedAt = t.exitedAt;
  if (t.reason) out.reason = t.reason;
  if (t.logPath) out.logPath = t.logPath;
  if (t.status !== 'stopped') {
    if (t.attachPath) out.attachPath = t.attachPath;
    if (t.ctlPath) out.ctlPath = t.ctlPath;
  }
  return out;
}

/**
 * Tasks (the processes of containers), forwarded to the shim on each container's node. The
 * task-service keeps a record per task in Redis; exits come from the shim (persisted there first,
 * then announced) and are recorded here from the event or, after downtime, by reconcile().
 */
export class TaskManager {
  readonly waiters = new ExitWaiters();
  /** Collections this replica began after replying to a background removal (see settle()). */
  private readonly collecting = new Set<Promise<void>>();
  /** The reconcile's back-off of removed containers whose freeing keeps failing. */
  private readonly collectRetries = new FreeRetries();
  /** The reconcile's back-off of removals that stopped half-way and keep failing. */
  private readonly removeRetries = new FreeRetries();

  constructor(
    private readonly store: ContainerStore,
    private readonly containers: ContainerManager,
    private readonly deps: Deps,
    private readonly log: Logger,
  ) {}

  private async running(ns: string, ref: string): Promise<{ c: Container; t: Task }> {
    const c = await this.store.resolve(ns, ref);
    const t = await this.store.getTask(ns, c.id);
    if (!t || t.status === 'stopped' || t.status === 'created') {
      throw errors.precondition(`container "${c.name}" is not running`);
    }
    return { c, t };
  }

  /** Handles one `tasks.exit` event: records it (once across replicas) and wakes waiters. */
  async onExit(e: TaskExit): Promise<void> {
    this.waiters.notify(e);
    if (e.execId) return;
    const recorded = await this.store.recordExit(e);
    if (recorded && e.reason === 'OOMKilled') {
      this.deps.publish(TaskTopic.taskOom, e.namespace, { id: e.id, pid: e.pid });
    }
    // Not awaited: heal() records exits while holding the container's lock, which removal takes too.
    if (recorded) void this.autoRemove(e.namespace, e.id);
  }

  /**
   * Removes a stopped container labelled AUTO_REMOVE_LABEL (`run -d --rm`). Only the replica that
   * recorded the exit gets here; one that died before removing is covered by reconcile().
   */
  private async autoRemove(ns: string, id: string): Promise<void> {
    try {
      const c = await this.store.get(ns, id);
      if (c?.labels[AUTO_REMOVE_LABEL] !== 'true') return;
      await this.removeContainer(ns, id, false);
    } catch (err) {
      if (err instanceof BerthError && err.code === Code.NOT_FOUND) return;
      this.log.warn({ err: (err as Error).message, ns, id }, 'auto-remove failed');
    }
  }

  /**
   * Creates the task of a container (runc create via the shim); a stopped previous run is cleared.
   * With `start` the task is started too, as a start() right after would (recorded created first,
   * then running); a start that fails deletes the task again and throws its error.
   */
  async create(
    ns: string,
    ref: string,
    opts: { start?: boolean; netnsPod?: string; startBy?: number } = {},
  ): Promise<CreateTaskReply> {
    const { c, t, resolved } = await this.createLocked(
      ns,
      ref,
      opts.netnsPod,
      opts.start === true,
      opts.startBy,
    );
    const withNode = resolved ? { resolved } : {};
    // The shim started it in its create (a shim that cannot replies `created`: started here).
    if (!opts.start || t.status !== 'created') return { ...t, ...withNode };
    try {
      const st = await this.startTask(c, t);
      return {
        ...t,
        status: 'running',
        pid: st.pid,
        ...(st.startedAt ? { startedAt: st.startedAt } : {}),
        ...withNode,
      };
    } catch (err) {
      await this.delete(ns, c.id).catch((e: unknown) =>
        this.log.warn(
          { err: (e as Error).message, ns, id: c.id },
          'deleting a task whose start failed failed',
        ),
      );
      throw err;
    }
  }

  /**
   * `berth run` in one call: the container made (ContainerManager.create), then its task created
   * and started. Beside one client round trip, what it saves is the wait between the two: the
   * task's create follows the container's record at once. A task that fails to be made or to
   * start removes the container again before the error is thrown, as the CLI did after a failed
   * create or start: the caller finds nothing left.
   */
  async run(ns: string, req: CreateContainerRequest, startBy?: number): Promise<RunContainerReply> {
    // A bridge container's CNI ADD runs in the task's create, beside `runc create`.
    const c = await this.containers.create(ns, req, { attachAtStart: true });
    const container = { id: c.id, namespace: c.namespace, name: c.name, node: c.node, io: c.io };
    try {
      return {
        container,
        task: await this.create(ns, c.id, { start: true, ...(startBy !== undefined ? { startBy } : {}) }),
      };
    } catch (err) {
      await this.removeContainer(ns, container.id, true).catch((e: unknown) =>
        this.log.warn(
          { err: (e as Error).message, ns, id: container.id },
          'removing a container whose task failed to start failed',
        ),
      );
      throw err;
    }
  }

  /**
   * create() under the container's lock: the container as it was then and its new task. With
   * `start` the shim is asked to start the task in the same call; a task it started is recorded
   * `running` at once (both events published), and an exit announced before that record existed
   * is recorded once it does (see recordEarlyExit).
   */
  private async createLocked(
    ns: string,
    ref: string,
    netnsPod: string | undefined,
    start: boolean,
    startBy?: number,
  ): Promise<{ c: Container; t: Task; resolved?: ShimResolvedProcess }> {
    const id = CONTAINER_ID_PATTERN.test(ref) ? ref : (await this.store.resolve(ns, ref)).id;
    // The record, the removal mark and the task, read with the lock's acquire: one round trip.
    const read = () => this.store.current(ns, id);
    return this.containers.lockAndRead(ns, id, read, async ({ c, removing, task: prev }, lock) => {
      if (!c) throw errors.notFound(`container "${id}" not found`);
      if (removing) {
        throw errors.precondition(
          `container "${c.name}" is being removed (an earlier removal did not finish; it is retried): remove it with 'berth rm -f'`,
        );
      }
      if (prev && prev.status !== 'stopped') {
        throw errors.exists(`container "${c.name}" already has a ${prev.status} task`);
      }
      if (prev) {
        await ignoreGone(this.deps.shim(c.node, ns).delete({ namespace: ns, id: c.id }));
        await this.store.deleteTask(ns, c.id);
      }
      // The mounts prepare gave at create (one hop fewer); older records ask the snapshot-service,
      // and one whose snapshot is missing (a prepare after the create's reply that failed) has it made.
      const rootfs = await this.containers.rootfsOf(c);
      // A bridge container made by `run` (see ContainerManager.create's attachAtStart), or one a
      // crash left before its first task attached it, is attached now: a task started here by its
      // shim beside `runc create`, else by `network-setup` before the create.
      const attach = unattached(c) ? { portMappings: c.config.ports ?? [] } : undefined;
      const shim = this.deps.shim(c.node, ns);
      let ips =
        attach && !start
          ? podAddresses((await shim['network-setup']({ podId: c.id, ...attach })).ips)
          : undefined;
      // A process started by the shim may exit before its task is recorded here, and onExit finds
      // no task to record it on then: the exit is caught here and recorded after the commit.
      const early: TaskExit[] = [];
      const unwatch = start ? this.waiters.watch(ExitWaiters.key(ns, c.id), (e) => early.push(e)) : undefined;
      try {
        const st = await shim.create({
          namespace: ns,
          id: c.id,
          spec: nodeInput(c),
          rootfs,
          terminal: c.io.terminal,
          stdin: c.io.stdin,
          ...(c.io.logPath ? { logPath: c.io.logPath } : {}),
          ...(usesShimFiles(c) ? { files: shimFiles(c) } : {}),
          seccomp: seccompOf(c.config),
          apparmor: apparmorOf(c.config),
          capabilities: capabilitiesOf(c.config),
          ...(hostDevicesOf(c.config) ? { hostDevices: true } : {}),
          ...(c.config.devices?.length ? { devices: c.config.devices } : {}),
          // Containers stored before users were left to the node have theirs resolved in the spec.
          ...(c.config.user !== undefined ? { user: c.config.user } : {}),
          ...(attach && start ? { netnsPod: c.id, startAttached: attach } : netnsPod ? { netnsPod } : {}),
          ...(start && !attach ? { start } : {}),
          // The shim starts the task only while this call's own caller still waits for it.
          ...(start && startBy !== undefined ? { startWithinMs: Math.max(0, startBy - Date.now()) } : {}),
        });
        if (attach && start) {
          // A shim that did not know startAttached left the task created and the pod unattached.
          // Attaching it may fail: the created task is then deleted, not left for every later
          // start to find (ALREADY_EXISTS) until the container is removed.
          const network =
            st.network ??
            (await shim['network-setup']({ podId: c.id, ...attach }).catch(async (err: unknown) => {
              await ignoreGone(shim.delete({ namespace: ns, id: c.id })).catch(() => undefined);
              throw err;
            }));
          ips = podAddresses(network.ips);
        }
        // `stopped` too: it started, and its exit is recorded below or by its event.
        const started = st.status === 'running' || st.status === 'stopped';
        const t: Task = {
          id: c.id,
          namespace: ns,
          node: c.node,
          status: started ? 'running' : 'created',
          pid: st.pid,
          createdAt: new Date().toISOString(),
        };
        if (started) t.startedAt = st.startedAt ?? t.createdAt;
        if (st.logPath) t.logPath = st.logPath;
        if (st.attachPath) t.attachPath = st.attachPath;
        if (st.ctlPath) t.ctlPath = st.ctlPath;
        // The task, the container as resolved (and attached) and the lock's release in one round trip.
        let updated = st.resolved ? withResolved(c, st.resolved) : undefined;
        if (ips && c.network) updated = { ...(updated ?? c), network: { ...c.network, ips } };
        await this.store.commitTask(t, lock, updated);
        this.deps.publish(TaskTopic.taskCreate, ns, { id: c.id, pid: st.pid, node: c.node });
        if (started) {
          this.deps.publish(TaskTopic.taskStart, ns, { id: c.id, pid: st.pid });
          await this.recordEarlyExit(c, st, early);
        }
        return { c, t, ...(st.resolved ? { resolved: st.resolved } : {}) };
      } finally {
        unwatch?.();
      }
    });
  }

  /**
   * Records the exit of a task the shim started in its create when it came before the task's
   * record (its event then found nothing to record on), or came back in the create's reply.
   * An exit of an earlier run (another pid) is not this task's.
   */
  private async recordEarlyExit(c: Container, st: ShimState, early: TaskExit[]): Promise<void> {
    const seen = early.find((e) => e.pid === st.pid || e.pid === 0);
    const exit = seen ?? exitOf(c, st);
    if (exit) await this.onExit(exit);
  }

  /** Starts the task, or one of its exec processes. */
  async start(ns: string, ref: string, execId?: string): Promise<ProcessState> {
    const c = await this.store.resolve(ns, ref);
    const t = await this.store.getTask(ns, c.id);
    if (!t) throw errors.notFound(`container "${c.name}" has no task: create it first`);
    if (execId && t.status !== 'running') throw errors.precondition(`container "${c.name}" is not running`);
    if (!execId) return this.startTask(c, t);
    const st = await this.deps.shim(c.node, ns).start({ namespace: ns, id: c.id, execId });
    this.deps.publish(TaskTopic.taskExecStarted, ns, { id: c.id, execId, pid: st.pid });
    return toProcessState(st);
  }

  /** Starts a created task (its init) on its shim and records it running. */
  private async startTask(c: Container, t: Task): Promise<ProcessState> {
    if (t.status !== 'created') {
      throw errors.precondition(`task of container "${c.name}" is ${t.status}, not created`);
    }
    const ns = c.namespace;
    const st = await this.deps.shim(c.node, ns).start({ namespace: ns, id: c.id });
    const startedAt = new Date().toISOString();
    await this.store.setTaskFields(ns, c.id, { status: 'running', pid: st.pid, startedAt });
    this.deps.publish(TaskTopic.taskStart, ns, { id: c.id, pid: st.pid });
    return { ...toProcessState(st), startedAt };
  }

  /** Sends a signal; FAILED_PRECONDITION when the process is not running. */
  async kill(ns: string, req: KillRequest): Promise<void> {
    const c = await this.store.resolve(ns, req.id);
    const t = await this.store.getTask(ns, c.id);
    if (!t || t.status === 'stopped') throw errors.precondition(`container "${c.name}" is not running`);
    await this.deps.shim(c.node, ns).kill({
      namespace: ns,
      id: c.id,
      ...(req.execId ? { execId: req.execId } : {}),
      signal: req.signal ?? c.stopSignal,
      all: req.all ?? false,
    });
  }

  /**
   * The state of the task (or an exec). A task the store still thinks alive is checked with its
   * shim, and an exit found there is recorded: that is how missed events heal.
   */
  async state(ns: string, ref: string, execId?: string): Promise<ProcessState> {
    const c = await this.store.resolve(ns, ref);
    if (execId) {
      return toProcessState(await this.deps.shim(c.node, ns).state({ namespace: ns, id: c.id, execId }));
    }
    const t = await this.store.getTask(ns, c.id);
    if (!t) throw errors.notFound(`container "${c.name}" has no task`);
    if (t.status === 'stopped') return taskState(t);
    const healed = await this.heal(c, t);
    return taskState(healed);
  }

  /** Asks the shim about a task the store thinks alive; records an exit it missed. */
  private async heal(c: Container, t: Task): Promise<Task> {
    let st: ShimState;
    try {
      st = await this.deps.shim(c.node, c.namespace).state({ namespace: c.namespace, id: c.id });
    } catch (err) {
      if (err instanceof BerthError && err.code === Code.NOT_FOUND) {
        // The shim no longer knows the task (its node lost it): its exit status is unknown, 255 as containerd.
        st = {
          namespace: c.namespace,
          id: c.id,
          status: 'stopped',
          pid: t.pid,
          exitCode: 255,
          exitedAt: new Date().toISOString(),
          reason: 'Unknown',
        };
      } else throw err;
    }
    const exit = exitOf(c, st);
    if (exit) {
      await this.onExit(exit);
    } else if (st.status !== t.status && (st.status === 'running' || st.status === 'paused')) {
      await this.store.setTaskFields(c.namespace, c.id, { status: st.status });
    }
    return (await this.store.getTask(c.namespace, c.id)) ?? t;
  }

  /** Waits for the process to exit: no lost wakeup (register, then read the persisted state). */
  async wait(ns: string, ref: string, execId: string | undefined, timeoutMs: number): Promise<ExitStatus> {
    const c = await this.store.resolve(ns, ref);
    const w = this.waiters.register(ExitWaiters.key(ns, c.id, execId));
    let timer: NodeJS.Timeout | undefined;
    try {
      const st = await this.state(ns, c.id, execId);
      if (st.status === 'stopped' && st.exitCode !== undefined) {
        return {
          exitCode: st.exitCode,
          exitedAt: st.exitedAt ?? '',
          ...(st.reason ? { reason: st.reason } : {}),
        };
      }
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(
          () =>
            reject(
              new BerthError(
                Code.DEADLINE_EXCEEDED,
                `container "${c.name}" did not exit within ${timeoutMs} ms`,
              ),
            ),
          timeoutMs,
        );
      });
      const e = await Promise.race([w.exited, timeout]);
      return execId ? e : { ...e, reason: exitReason(e.exitCode, e.reason) };
    } finally {
      w.cancel();
      if (timer) clearTimeout(timer);
    }
  }

  /** Deletes a stopped (or never started) task, returning its exit status. */
  async delete(ns: string, ref: string, execId?: string): Promise<ExitStatus> {
    const first = await this.store.resolve(ns, ref);
    if (execId) {
      const st = await this.deps.shim(first.node, ns).delete({ namespace: ns, id: first.id, execId });
      return { exitCode: st.exitCode ?? 255, exitedAt: st.exitedAt ?? '' };
    }
    return this.containers.lock(ns, first.id, async () => {
      const c = await this.store.resolve(ns, first.id);
      let t = await this.store.getTask(ns, c.id);
      if (!t) throw errors.notFound(`container "${c.name}" has no task`);
      if (t.status !== 'stopped' && t.status !== 'created') t = await this.heal(c, t);
      if (t.status !== 'stopped' && t.status !== 'created') {
        throw errors.precondition(`container "${c.name}" is ${t.status}: stop it before deleting its task`);
      }
      if (t.status === 'created') {
        // Its init waits on runc's exec fifo. The shim's delete below (runc delete --force) kills
        // it as well, so a kill that failed (runc unable to walk the container's cgroups, say) is
        // logged and the delete goes on, rather than leaving the task undeletable.
        await ignoreGone(
          this.deps.shim(c.node, ns).kill({ namespace: ns, id: c.id, signal: 'SIGKILL', all: true }),
        ).catch((err: unknown) =>
          this.log.warn(
            { err: (err as Error).message, ns, id: c.id },
            'killing a created task before its delete failed: the force delete ends it',
          ),
        );
      }
      const st = await this.deps
        .shim(c.node, ns)
        .delete({ namespace: ns, id: c.id })
        .catch((err: unknown) => {
          if (err instanceof BerthError && err.code === Code.NOT_FOUND) return undefined;
          throw err;
        });
      await this.store.deleteTask(ns, c.id);
      const exit: ExitStatus = {
        exitCode: t.exitCode ?? st?.exitCode ?? 255,
        exitedAt: t.exitedAt ?? st?.exitedAt ?? new Date().toISOString(),
        ...(t.reason ? { reason: t.reason } : {}),
      };
      this.deps.publish(TaskTopic.taskDelete, ns, { id: c.id, pid: t.pid, ...exit });
      return exit;
    });
  }

  /**
   * Removes a container; with force a live task is killed (SIGKILL) and deleted first. With
   * `background`, the record goes as soon as no task runs and what it held on its node (its
   * stopped task, files, network, snapshot) is freed after the reply (see removeInBackground).
   */
  async removeContainer(ns: string, ref: string, force: boolean, background = false): Promise<void> {
    const full = CONTAINER_ID_PATTERN.test(ref);
    // A creation of this replica still preparing the rootfs holds the lock: its end is waited for.
    if (full) await this.containers.settled(ns, ref);
    // The CRI's usual case, a full id whose task is done and whose lock is free: one round trip.
    if (background && full) {
      const done = await this.store.removeIfDone(ns, ref);
      if (done) return this.removed(done.c, done.task);
    }
    // A full id (as the CRI sends) is read with its task in one round trip.
    const byId = full ? await this.store.current(ns, ref) : undefined;
    const first = byId?.c ?? (await this.store.resolve(ns, ref));
    let t = byId?.c ? byId.task : await this.store.getTask(ns, first.id);
    if (t && t.status !== 'stopped' && t.status !== 'created') t = await this.heal(first, t);
    const live = t !== undefined && t.status !== 'stopped' && t.status !== 'created';
    if (live && !force) {
      throw errors.precondition(
        `container "${first.name}" is ${t?.status}: stop it first or force the removal`,
      );
    }
    // From here the container is on its way out: no new task, and if a step below fails (a shim
    // or snapshot-service down) the reconcile finishes the removal. A removal in the background
    // of a container with no live task needs no mark: its record goes in one transaction.
    if (!background || live) await this.store.markRemoving(ns, first.id);
    if (live) {
      await ignoreGone(
        this.deps.shim(first.node, ns).kill({ namespace: ns, id: first.id, signal: 'SIGKILL', all: true }),
      );
      await this.wait(ns, first.id, undefined, FORCE_KILL_WAIT_MS);
    }
    if (background) return this.removeInBackground(ns, first.id, t);
    const network =
      t &&
      (await releaseNetworkMeanwhile(
        this.deps,
        this.store,
        (fn) => this.containers.lock(ns, first.id, fn),
        first,
        t,
      ));
    // Both settle before either's failure is thrown: nothing of this removal goes on behind it.
    const [deleted, released] = await Promise.allSettled([
      t && ignoring(this.delete(ns, first.id), Code.NOT_FOUND),
      network?.released,
    ]);
    if (deleted.status === 'rejected') throw deleted.reason;
    if (released.status === 'rejected') throw released.reason;
    await this.containers.lock(ns, first.id, async () => {
      const c = await this.store.get(ns, first.id);
      if (!c) return;
      if (await this.store.getTask(ns, c.id)) {
        // A create that won the race keeps its container: this removal is dropped, not retried.
        await this.store.unmarkRemoving(ns, c.id);
        throw errors.precondition(`container "${c.name}" got a new task while being removed`);
      }
      await this.containers.remove(c);
    });
  }

  /**
   * The record of a container whose task is stopped, never started or absent goes at once (with
   * its task's, announced as a task delete would), and its node resources are freed after: as
   * containerd's CRI leaves snapshot removal to its garbage collector, the caller waits for no
   * runc, unmount or snapshot work. A collection that fails is finished by the reconcile.
   */
  private async removeInBackground(ns: string, id: string, seen: Task | undefined): Promise<void> {
    const removed = await this.containers.lock(ns, id, async (lock) => {
      const { c, task: t } = await this.store.current(ns, id);
      if (!c) return undefined;
      if ((t && t.status !== 'stopped' && t.status !== 'created') || t?.createdAt !== seen?.createdAt) {
        // A create or start that won the race keeps its container: this removal is dropped, not retried.
        await this.store.unmarkRemoving(ns, id);
        throw errors.precondition(`container "${c.name}" got a new task while being removed`);
      }
      // The record goes with a note of what is left to free, in one transaction: gone for every
      // reader at once, and a replica that dies before freeing leaves it to the reconcile.
      await this.store.deleteForCollection(c, lock);
      return { c, t };
    });
    if (removed) this.removed(removed.c, removed.t);
  }

  /**
   * Waits, at most `timeoutMs`, for the collections this replica began after its replies, so a
   * graceful stop right after `berth run --rm` still frees what the container held; one cut
   * short stays recorded and the next replica's reconcile finishes it.
   */
  settle(timeoutMs: number): Promise<void> {
    return settleWithin([...this.collecting], timeoutMs);
  }

  /**
   * After a container's record went for collection: its task's delete (when it had one) and its
   * own are announced, and what it held on its node is freed in the background (settle() waits
   * for it at a graceful stop).
   */
  private removed(c: Container, t: Task | undefined): void {
    const { namespace: ns, id } = c;
    const announce = () => {
      if (t) {
        this.deps.publish(TaskTopic.taskDelete, ns, {
          id,
          pid: t.pid,
          exitCode: t.exitCode ?? 255,
          exitedAt: t.exitedAt ?? new Date().toISOString(),
          ...(t.reason ? { reason: t.reason } : {}),
        });
      }
      this.deps.publish(TaskTopic.containerDelete, ns, { id, name: c.name });
    };
    // Begun once the reply is out (setImmediate runs after this turn's I/O, and nats.js sends
    // the reply from a microtask): the caller (often the one listener of these events, the CRI
    // gateway, whose view drops the record on the reply) decodes no event before its reply, and
    // the collection's first steps (a lock, a shim request) are not its to wait for. The record
    // is gone from Redis already: a replica that dies before announcing loses only the events,
    // which are at-most-once anyway (listeners resync from the store).
    const freeing: Promise<void> = new Promise<void>((resolve) => setImmediate(resolve))
      .then(() => {
        try {
          announce();
        } catch (err) {
          // NATS is closing: the collection below meets it too, and the reconcile finishes it.
          this.log.warn({ err: (err as Error).message, ns, id }, 'could not announce a removed container');
        }
        return this.containers.collect(c);
      })
      .then(
        () => undefined,
        (err: unknown) =>
          this.log.warn(
            { err: (err as Error).message, ns, id },
            'freeing a removed container failed; the reconcile retries',
          ),
      )
      .finally(() => this.collecting.delete(freeing));
    this.collecting.add(freeing);
  }

  /** Adds an exec process to a running task (start it with start + execId). */
  async exec(ns: string, req: ExecRequest): Promise<ProcessState> {
    const { c } = await this.running(ns, req.id);
    const base = c.spec.process as Record<string, unknown> & { env?: string[]; cwd?: string };
    const process: Record<string, unknown> = {
      ...base,
      args: req.args,
      env: mergeEnv(base.env, req.tty ? ['TERM=xterm'] : [], req.env),
      cwd: req.cwd ?? base.cwd ?? '/',
      terminal: req.tty ?? false,
    };
    // The user (the exec's, else the container's) is resolved in the rootfs by the node's shim.
    const user = req.user ?? c.config.user;
    if (req.user) process.user = provisionalUser(req.user);
    else if (user !== undefined) process.user = provisionalUser(user, c.config.additionalGids);
    const st = await this.deps.shim(c.node, ns).exec({
      namespace: ns,
      id: c.id,
      execId: req.execId,
      process,
      terminal: req.tty ?? false,
      stdin: req.stdin ?? false,
      ...(user !== undefined ? { user } : {}),
    });
    this.deps.publish(TaskTopic.taskExecAdded, ns, { id: c.id, execId: req.execId });
    return toProcessState(st);
  }

  /** Freezes (pause) or thaws (resume) the task's cgroup. */
  async setPaused(ns: string, ref: string, paused: boolean): Promise<void> {
    const { c, t } = await this.running(ns, ref);
    if (paused && t.status === 'paused') throw errors.precondition(`container "${c.name}" is already paused`);
    if (!paused && t.status !== 'paused') throw errors.precondition(`container "${c.name}" is not paused`);
    const shim = this.deps.shim(c.node, ns);
    await (paused ? shim.pause : shim.resume)({ namespace: ns, id: c.id });
    await this.store.setTaskFields(ns, c.id, { status: paused ? 'paused' : 'running' });
    this.deps.publish(paused ? TaskTopic.taskPaused : TaskTopic.taskResumed, ns, { id: c.id });
  }

  /** The host pids of a running task, from its shim. */
  async pids(ns: string, ref: string): Promise<ShimPidsReply> {
    const { c } = await this.running(ns, ref);
    return this.deps.shim(c.node, ns).pids({ namespace: ns, id: c.id });
  }

  /** One cgroup sample of a running task, from its shim. */
  async stats(ns: string, ref: string): Promise<ShimStats> {
    const { c } = await this.running(ns, ref);
    return this.deps.shim(c.node, ns).stats({ namespace: ns, id: c.id });
  }

  /** Closes the stdin of a running task's process (or one of its execs). */
  async closeStdin(ns: string, ref: string, execId?: string): Promise<void> {
    const { c } = await this.running(ns, ref);
    await this.deps
      .shim(c.node, ns)
      ['close-stdin']({ namespace: ns, id: c.id, ...(execId ? { execId } : {}) });
  }

  /** Updates a running task's resources and the stored spec. */
  async update(ns: string, ref: string, resources: Resources): Promise<void> {
    const { c } = await this.running(ns, ref);
    const merged = mergeResources(c.config.resources ?? {}, resources);
    // The device rules are the container's for life: an update changes only the limits.
    const { devices: _devices, ...limits } = linuxResources(merged);
    await this.deps.shim(c.node, ns).update({ namespace: ns, id: c.id, resources: limits });
    await this.containers.update(ns, { id: c.id, resources });
  }

  /**
   * Reconciles the store with the nodes (see reconcile.ts): half-made containers finished or
   * undone, exits missed while no task-service listened recorded, `--rm` removals done.
   */
  reconcile(): Promise<ReconcileResult> {
    return reconcileAll({
      store: this.store,
      containers: this.containers,
      log: this.log,
      heal: (c, t) => this.heal(c, t),
      autoRemove: (ns, id) => this.autoRemove(ns, id),
      remove: (ns, id) => this.removeContainer(ns, id, true),
      collectRetries: this.collectRetries,
      removeRetries: this.removeRetries,
    });
  }

  /** Tells the reconcile how often it runs, so its back-off is capped at the same time whatever it is. */
  setReconcileInterval(intervalMs: number): void {
    this.collectRetries.setInterval(intervalMs);
    this.removeRetries.setInterval(intervalMs);
  }
}

/**
 * The spec a task is created from: the stored one, whose process.user (the last run's answer) is
 * reset to what the request gave, so each run's node resolves the user afresh (groups included).
 */
function nodeInput(c: Container): Record<string, unknown> {
  if (c.config.user === undefined) return c.spec;
  const user = provisionalUser(c.config.user, c.config.additionalGids);
  return { ...c.spec, process: { ...(c.spec.process as Record<string, unknown>), user } };
}

/**
 * True for a bridge container whose network has no addresses on record: pinned but not attached
 * yet (made by `run`, attached by its first task's create), or one whose network gave none.
 */
function unattached(c: Container): boolean {
  return c.config.network === 'bridge' && c.network !== undefined && c.network.ips.length === 0;
}

/** True when the container's spec names files its node's shim writes (containers made since). */
function usesShimFiles(c: Container): boolean {
  const mounts = (c.spec.mounts ?? []) as { source?: unknown }[];
  return mounts.some((m) => typeof m.source === 'string' && m.source.startsWith(SHIM_FILE_SOURCE));
}

/** What the container's node needs to write its /etc files: the facts of the node are read there. */
function shimFiles(c: Container): ShimContainerFiles {
  const hostname = c.spec.hostname;
  const dns = c.config.dns;
  return {
    network: c.config.network === 'host' ? 'host' : 'private',
    ...(typeof hostname === 'string' && hostname !== '' ? { hostname } : {}),
    // Whatever the request gives (searches or options alone too): as containerd writes a pod's.
    ...(dns && (dns.servers.length || dns.searches.length || dns.options.length)
      ? { resolvConf: resolvConf(dns) }
      : {}),
  };
}

/**
 * The container with the node's answer in its stored spec (inspect, CRI status): the user's ids
 * and the capability set its shim resolved for this run.
 */
function withResolved(c: Container, r: ShimResolvedProcess): Container {
  return { ...c, spec: withResolvedProcess(c.spec, r) };
}

/** The exit a shim's state reports for a container's task, or undefined while it has none. */
function exitOf(c: Container, st: ShimState): TaskExit | undefined {
  if (st.status !== 'stopped' || st.exitCode === undefined) return undefined;
  return {
    namespace: c.namespace,
    id: c.id,
    pid: st.pid,
    exitCode: st.exitCode,
    exitedAt: st.exitedAt ?? new Date().toISOString(),
    node: c.node,
    ...(st.reason ? { reason: st.reason } : {}),
  };
}

/**
 * When (Date.now()) a task created for a request that just arrived must have started by: the
 * request's timeout, less START_MARGIN_MS, from now. A task started later would run although its
 * caller was told the call failed (it timed out waiting).
 */
export function callerStartBy(timeoutMs: number): number {
  return Date.now() + timeoutMs - START_MARGIN_MS;
}
