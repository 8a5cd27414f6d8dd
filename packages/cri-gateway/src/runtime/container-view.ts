import {
  Code,
  type Container,
  type ContainerInfo,
  exitReason,
  type ProcessState,
  TaskTopic,
  toBerthError,
} from '@berth/api';
import { withResolvedProcess } from '@berth/kit';
import { CRI_NAMESPACE } from '../images/ports.js';
import type { EventSource } from './events.js';
import { CriLabel } from './meta.js';
import { Mirror } from './mirror.js';
import type { TaskPort } from './ports.js';

/**
 * Topics after which a container's record may have changed (tasks.exit and tasks.delete are
 * applied from the event, containers.delete drops it).
 */
const REFRESH_TOPICS: ReadonlySet<string> = new Set([
  TaskTopic.containerCreate,
  TaskTopic.containerUpdate,
  TaskTopic.taskCreate,
  TaskTopic.taskStart,
  TaskTopic.taskPaused,
  TaskTopic.taskResumed,
]);

/** How often the whole view is read again, in case an event was lost (core NATS is at-most-once). */
export const RESYNC_MS = 30_000;

/**
 * The CRI containers and pods of this node as the task-service records them, kept in the
 * gateway's memory so the kubelet's constant status and list calls (PLEG relists every second)
 * answer without a NATS round trip, as containerd's CRI answers from its own store. It is a
 * TaskPort in front of the task-service's: reads come from memory; every write goes through, and
 * the record is set from the write's reply where that says what it now is (create, create task,
 * start, update, wait; a removal drops it), else marked for a refresh that any later read of it
 * waits for, so a caller always sees its own writes. Other changes arrive as events (each
 * refreshes the container it names), an exit and a task delete straight from their events, and a
 * resync reads everything again every RESYNC_MS and after a NATS reconnect.
 */
export class ContainerView implements TaskPort {
  private readonly mirror: Mirror<ContainerInfo>;
  private unsubscribe: (() => void) | undefined;
  /** Exits announced before the view held the task they end, by container id. */
  private readonly earlyExits = new Map<string, ExitEvent>();
  /**
   * Per container with a write in flight (apply), the events that named it meanwhile: its reply,
   * made after them, usually shows them, so they are checked against it instead of read again.
   */
  private readonly writing = new Map<string, { depth: number; events: Announced[] }>();
  /** Per name of a container being created, the id its `containers.create` event announced. */
  private readonly creating = new Map<string, string | undefined>();

  constructor(
    private readonly inner: TaskPort,
    private readonly node: string,
    onError: (err: unknown) => void = () => undefined,
  ) {
    this.mirror = new Mirror<ContainerInfo>(
      {
        fetch: async (id) => {
          try {
            const info = await inner.getContainer(id);
            if (info.container.id !== id || info.container.node !== node) return undefined;
            return this.withEarlyExit(id, info);
          } catch (err) {
            if (toBerthError(err).code === Code.NOT_FOUND) return undefined;
            throw err;
          }
        },
        list: async () =>
          (await inner.listContainers({ [CriLabel.kind]: '' }))
            .filter((i) => i.container.node === node)
            .map((i) => [i.container.id, i]),
        merge: keepExit,
      },
      onError,
    );
  }

  /** Starts following events, then loads every CRI container of the node and resyncs periodically. */
  async follow(events: EventSource): Promise<void> {
    this.unsubscribe = events((e) => {
      if (e.namespace !== CRI_NAMESPACE) return;
      const ev = (e.event ?? {}) as { id?: unknown; execId?: unknown };
      if (typeof ev.id !== 'string' || ev.execId) return;
      if (e.topic === TaskTopic.taskExit) {
        const exit = e.event as ExitEvent;
        // A process that exits at once can announce it before the view holds its task (the
        // create's reply is still on its way): kept until a record with that task is set.
        if (!this.mirror.patch(ev.id, (cur) => withExit(cur, exit)) && this.mirror.knows(ev.id))
          this.earlyExits.set(ev.id, exit);
      } else if (e.topic === TaskTopic.containerDelete) {
        this.earlyExits.delete(ev.id);
        this.mirror.forget(ev.id);
      }
      // The task-service announces a task delete once its record is gone: nothing to read again.
      else if (e.topic === TaskTopic.taskDelete) {
        this.earlyExits.delete(ev.id);
        this.mirror.replace(ev.id, withoutTask);
      }
      // The record a write's reply set usually shows the write's own event already: a read
      // then need not wait for a refresh that would bring nothing new.
      else if (REFRESH_TOPICS.has(e.topic)) this.announced(ev.id, e.topic, e.event);
    });
    await this.mirror.start(RESYNC_MS);
  }

  /**
   * An event after which the record may have changed: read again unless the kept record shows
   * it, or a write of it (or its create) is on its way whose reply will be checked against it.
   */
  private announced(id: string, topic: string, event: unknown): void {
    if (topic === TaskTopic.containerCreate) {
      const name = (event as { name?: unknown }).name;
      if (typeof name === 'string' && this.creating.has(name) && !this.mirror.knows(id)) {
        this.creating.set(name, id);
        return;
      }
    }
    const w = this.writing.get(id);
    if (w) w.events.push({ topic, event });
    else if (!shows(this.mirror.peek(id), topic, event)) void this.mirror.refresh(id);
  }

  /** Stops following events; reads go to the task-service from then on. */
  close(): void {
    this.unsubscribe?.();
    this.mirror.stop();
  }

  /** Reads every CRI container of this node again (after a reconnect, or now and then). */
  resync(): Promise<void> {
    return this.mirror.resync();
  }

  /**
   * Runs a write whose reply says what the record now is: the kept record is set from it (`next`
   * of the kept one; undefined when it cannot tell) with no re-read, else refreshed as by write().
   */
  private async apply<R>(
    id: string,
    work: () => Promise<R>,
    next: (reply: R) => (cur: ContainerInfo | undefined) => ContainerInfo | undefined,
  ): Promise<R> {
    const w = this.writing.get(id) ?? { depth: 0, events: [] };
    this.writing.set(id, { depth: w.depth + 1, events: w.events });
    let reply: R;
    let events: Announced[] = [];
    try {
      reply = await work();
    } catch (err) {
      this.refreshAfterWrite(id);
      throw err;
    } finally {
      const now = this.writing.get(id);
      if (now && now.depth > 1) this.writing.set(id, { depth: now.depth - 1, events: now.events });
      else {
        this.writing.delete(id);
        events = now?.events ?? [];
      }
    }
    const [full, ...more] = this.mirror.keysFrom(id);
    const update = next(reply);
    const withEarly = (cur: ContainerInfo | undefined) => {
      const rec = update(cur);
      return rec && full ? this.withEarlyExit(full, rec) : rec;
    };
    // A refresh in flight was read before this write: the kept record must not wait for it.
    if (!this.mirror.loaded || !full || more.length > 0 || !this.mirror.replace(full, withEarly))
      this.refreshAfterWrite(id);
    // Events that arrived during the write and its reply does not show are read again.
    else if (events.some((e) => !shows(this.mirror.peek(full), e.topic, e.event))) this.refreshAfterWrite(id);
    return reply;
  }

  /** The record with an exit announced before it held the task that exit ends (then forgotten). */
  private withEarlyExit(id: string, rec: ContainerInfo): ContainerInfo {
    const exit = this.earlyExits.get(id);
    if (!exit || rec.task?.pid !== exit.pid) return rec;
    this.earlyExits.delete(id);
    return withExit(rec, exit) ?? rec;
  }

  private refreshAfterWrite(id: string): void {
    const [full, ...more] = this.mirror.keysFrom(id);
    if (this.mirror.loaded && full && more.length === 0) void this.mirror.refresh(full);
  }

  /** Runs a write, then refreshes what it changed (reads of it wait for that). */
  private async write<T>(id: string, work: () => Promise<T>): Promise<T> {
    try {
      return await work();
    } finally {
      const [full, ...more] = this.mirror.keysFrom(id);
      if (this.mirror.loaded && full && more.length === 0) void this.mirror.refresh(full);
    }
  }

  async getContainer(id: string): Promise<ContainerInfo> {
    if (!this.mirror.loaded) return this.inner.getContainer(id);
    const hit = await this.mirror.get(id);
    if (hit) return hit;
    // A prefix, a name, another node's container or one not seen yet: ask, and keep ours.
    const info = await this.inner.getContainer(id);
    const full = info.container.id;
    if (info.container.node === this.node && !this.mirror.knows(full)) void this.mirror.refresh(full);
    return info;
  }

  async listContainers(labels: Record<string, string>): Promise<ContainerInfo[]> {
    if (!this.mirror.loaded || labels[CriLabel.kind] === undefined) return this.inner.listContainers(labels);
    // A container whose refresh failed is missing from memory: a list without it would say it is
    // gone (the gateway's network collection would then tear its pod's network down).
    const all = await this.mirror.values();
    if (!all) return this.inner.listContainers(labels);
    const want = Object.entries(labels);
    return all.filter((i) =>
      want.every(([k, v]) => {
        const have = i.container.labels[k];
        return have !== undefined && (v === '' || have === v);
      }),
    );
  }

  createContainer: TaskPort['createContainer'] = async (req) => {
    // Its `containers.create` event comes before the reply, which then says all it would read.
    const name = req.name;
    const mine = name !== undefined && !this.creating.has(name);
    if (mine) this.creating.set(name, undefined);
    let c: Container;
    try {
      c = await this.inner.createContainer(req);
    } catch (err) {
      // A create that failed after its event (a lost reply) is read as any announced one.
      const id = mine ? this.creating.get(name) : undefined;
      if (id !== undefined && this.mirror.loaded) void this.mirror.refresh(id);
      throw err;
    } finally {
      if (mine) this.creating.delete(name);
    }
    if (this.mirror.loaded && c.node === this.node)
      this.mirror.replace(c.id, () => ({ container: c, status: 'created' }));
    return c;
  };
  updateContainer: TaskPort['updateContainer'] = (req) =>
    this.apply(
      req.id,
      () => this.inner.updateContainer(req),
      (c) => (cur) => cur && { ...cur, container: c },
    );
  updateTask: TaskPort['updateTask'] = (id, r) => this.write(id, () => this.inner.updateTask(id, r));
  deleteContainer: TaskPort['deleteContainer'] = async (id, force, background) => {
    const [full, ...more] = this.mirror.keysFrom(id);
    try {
      await this.inner.deleteContainer(id, force, background);
    } catch (err) {
      if (this.mirror.loaded && full && more.length === 0) void this.mirror.refresh(full);
      throw err;
    }
    // Its record is gone once the call returns: nothing to read again.
    if (full && more.length === 0) this.mirror.forget(full);
  };
  createTask: TaskPort['createTask'] = (id, opts) =>
    this.apply(
      id,
      () => this.inner.createTask(id, opts),
      ({ resolved, ...t }) =>
        (cur) => {
          // The exit of a task started with its create may have been applied already: keep it
          // (undefined: the record is read again, with what the node resolved).
          if (!cur || (cur.task?.status === 'stopped' && cur.task.pid === t.pid)) return undefined;
          // What the node resolved (user, groups, capabilities) is in the stored spec now.
          const container = resolved
            ? { ...cur.container, spec: withResolvedProcess(cur.container.spec, resolved) }
            : cur.container;
          return { ...cur, container, task: t, status: t.status };
        },
    );
  start: TaskPort['start'] = (id, execId) =>
    execId ? this.inner.start(id, execId) : this.apply(id, () => this.inner.start(id), withStart);
  kill: TaskPort['kill'] = (req) => this.inner.kill(req);
  wait: TaskPort['wait'] = (id, o) =>
    o.execId
      ? this.inner.wait(id, o)
      : this.apply(
          id,
          () => this.inner.wait(id, o),
          // The exit event may have been applied already: the kept record then is right as it is.
          (e) => (cur) =>
            cur &&
            (withExit(cur, { ...e, pid: cur.task?.pid ?? 0 }) ??
              (cur.task?.status === 'stopped' ? cur : undefined)),
        );
  deleteTask: TaskPort['deleteTask'] = (id, execId) =>
    execId ? this.inner.deleteTask(id, execId) : this.write(id, () => this.inner.deleteTask(id));
  exec: TaskPort['exec'] = (req) => this.inner.exec(req);
  stats: TaskPort['stats'] = (id) => this.inner.stats(id);
}

/**
 * True when the kept record already shows what an event announces, so refreshing it would read
 * nothing new: the container exists (its create), is the record the update made (the event's
 * updatedAt), or its task is the one with the event's pid (task create), started (task start).
 * Other topics say too little to tell, and are read again.
 */
function shows(cur: ContainerInfo | undefined, topic: string, event: unknown): boolean {
  if (!cur) return false;
  if (topic === TaskTopic.containerCreate) return true;
  if (topic === TaskTopic.containerUpdate) {
    const at = (event as { updatedAt?: unknown }).updatedAt;
    return typeof at === 'string' && cur.container.updatedAt === at;
  }
  const pid = (event as { pid?: unknown }).pid;
  if (!cur.task || typeof pid !== 'number' || cur.task.pid !== pid) return false;
  if (topic === TaskTopic.taskCreate) return true;
  const status = cur.task.status;
  return (
    topic === TaskTopic.taskStart && (status === 'running' || status === 'paused' || status === 'stopped')
  );
}

/**
 * The container with the exit a `tasks.exit` event reports, as the task-service will record it
 * (same pid, first exit wins); unchanged when it is not its task's.
 */
function withExit(cur: ContainerInfo, e: ExitEvent): ContainerInfo | undefined {
  if (!cur.task || cur.task.status === 'stopped' || (cur.task.pid !== 0 && cur.task.pid !== e.pid))
    return undefined;
  const task = {
    ...cur.task,
    status: 'stopped' as const,
    exitCode: e.exitCode,
    exitedAt: e.exitedAt,
    reason: exitReason(e.exitCode, e.reason),
  };
  return { ...cur, task, status: 'stopped' };
}

/** The container once its task's record is deleted: created, as the task-service lists it. */
function withoutTask(cur: ContainerInfo | undefined): ContainerInfo | undefined {
  if (!cur?.task) return undefined;
  const { task: _task, ...rest } = cur;
  return { ...rest, status: 'created' };
}

/**
 * The container whose task `start` (no exec) just started, as the task-service now records it;
 * unchanged when the view already applied that process's exit (a process that exits at once has
 * its `tasks.exit` event arrive before the start's reply).
 */
function withStart(st: ProcessState) {
  return (cur: ContainerInfo | undefined): ContainerInfo | undefined => {
    if (!cur?.task || !st.startedAt || st.status !== 'running') return undefined;
    if (cur.task.status === 'stopped' && cur.task.pid === st.pid) return undefined;
    const task = { ...cur.task, status: 'running' as const, pid: st.pid, startedAt: st.startedAt };
    return { ...cur, task, status: 'running' };
  };
}

/**
 * `fresh`, unless it shows alive a process the view already saw exit: a refresh read before the
 * task-service recorded the exit must not bring the process back.
 */
function keepExit(cur: ContainerInfo, fresh: ContainerInfo): ContainerInfo {
  if (cur.task?.status === 'stopped' && fresh.task && fresh.task.status !== 'stopped') {
    if (fresh.task.pid === cur.task.pid && fresh.task.createdAt === cur.task.createdAt) return cur;
  }
  return fresh;
}

/** An event that named a container during a write of it. */
interface Announced {
  topic: string;
  event: unknown;
}

/** The fields of a `tasks.exit` event the view applies. */
interface ExitEvent {
  pid: number;
  exitCode: number;
  exitedAt: string;
  reason?: string;
}
