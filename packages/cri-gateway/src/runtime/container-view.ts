import { Code, type ContainerInfo, exitReason, TaskTopic, toBerthError } from '@berth/api';
import { CRI_NAMESPACE } from '../images/ports.js';
import type { EventSource } from './events.js';
import { CriLabel } from './meta.js';
import { Mirror } from './mirror.js';
import type { TaskPort } from './ports.js';

/** Topics after which a container's record may have changed (tasks.exit is applied from the event). */
const REFRESH_TOPICS: ReadonlySet<string> = new Set([
  TaskTopic.containerCreate,
  TaskTopic.containerUpdate,
  TaskTopic.containerDelete,
  TaskTopic.taskCreate,
  TaskTopic.taskStart,
  TaskTopic.taskDelete,
  TaskTopic.taskPaused,
  TaskTopic.taskResumed,
]);

/** How often the whole view is read again, in case an event was lost (core NATS is at-most-once). */
export const RESYNC_MS = 30_000;

/**
 * The CRI containers and pods of this node as the task-service records them, kept in the
 * gateway's memory so the kubelet's constant status and list calls (PLEG relists every second)
 * answer without a NATS round trip, as containerd's CRI answers from its own store. It is a
 * TaskPort in front of the task-service's: reads come from memory; every write goes through and
 * marks the container for a refresh that any later read of it waits for, so a caller always sees
 * its own writes. Other changes arrive as events (each refreshes the container it names), an exit
 * straight from its event (the task-service records it a moment later), and a resync reads
 * everything again every RESYNC_MS and after a NATS reconnect.
 */
export class ContainerView implements TaskPort {
  private readonly mirror: Mirror<ContainerInfo>;
  private unsubscribe: (() => void) | undefined;

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
            return info.container.id === id && info.container.node === node ? info : undefined;
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
      if (e.topic === TaskTopic.taskExit)
        this.mirror.patch(ev.id, (cur) => withExit(cur, e.event as ExitEvent));
      else if (REFRESH_TOPICS.has(e.topic)) void this.mirror.refresh(ev.id);
    });
    await this.mirror.start(RESYNC_MS);
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
    const c = await this.inner.createContainer(req);
    if (this.mirror.loaded) void this.mirror.refresh(c.id);
    return c;
  };
  updateContainer: TaskPort['updateContainer'] = (req) =>
    this.write(req.id, () => this.inner.updateContainer(req));
  updateTask: TaskPort['updateTask'] = (id, r) => this.write(id, () => this.inner.updateTask(id, r));
  deleteContainer: TaskPort['deleteContainer'] = (id, force) =>
    this.write(id, () => this.inner.deleteContainer(id, force));
  createTask: TaskPort['createTask'] = (id) => this.write(id, () => this.inner.createTask(id));
  start: TaskPort['start'] = (id, execId) =>
    execId ? this.inner.start(id, execId) : this.write(id, () => this.inner.start(id));
  kill: TaskPort['kill'] = (req) => this.inner.kill(req);
  wait: TaskPort['wait'] = (id, o) =>
    o.execId ? this.inner.wait(id, o) : this.write(id, () => this.inner.wait(id, o));
  deleteTask: TaskPort['deleteTask'] = (id, execId) =>
    execId ? this.inner.deleteTask(id, execId) : this.write(id, () => this.inner.deleteTask(id));
  exec: TaskPort['exec'] = (req) => this.inner.exec(req);
  stats: TaskPort['stats'] = (id) => this.inner.stats(id);
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

/** The fields of a `tasks.exit` event the view applies. */
interface ExitEvent {
  pid: number;
  exitCode: number;
  exitedAt: string;
  reason?: string;
}
