import { Code, type ContainerInfo, exitReason, TaskTopic, toBerthError } from '@berth/api';
import { CRI_NAMESPACE } from '../images/ports.js';
import type { EventSource } from './events.js';
import { CriLabel } from './meta.js';
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
  private readonly byId = new Map<string, ContainerInfo>();
  /** Per id, the number of the latest refresh or write: an older refresh never lands over a newer one. */
  private readonly gen = new Map<string, number>();
  /** Refreshes in flight: a read of that id (or any list) waits for them. */
  private readonly pending = new Map<string, Promise<void>>();
  private loaded = false;
  private counter = 0;
  private timer: NodeJS.Timeout | undefined;
  private unsubscribe: (() => void) | undefined;

  constructor(
    private readonly inner: TaskPort,
    private readonly node: string,
    private readonly onError: (err: unknown) => void = () => undefined,
  ) {}

  /** Starts following events, then loads every CRI container of the node and resyncs periodically. */
  async follow(events: EventSource): Promise<void> {
    this.unsubscribe = events((e) => {
      if (e.namespace !== CRI_NAMESPACE) return;
      const ev = (e.event ?? {}) as { id?: unknown; execId?: unknown };
      if (typeof ev.id !== 'string' || ev.execId) return;
      if (e.topic === TaskTopic.taskExit) this.applyExit(ev.id, e.event as ExitEvent);
      else if (REFRESH_TOPICS.has(e.topic)) this.refresh(ev.id);
    });
    this.timer = setInterval(() => void this.resync().catch(this.onError), RESYNC_MS);
    this.timer.unref();
    await this.resync();
  }

  /** Stops following events; reads go to the task-service from then on. */
  close(): void {
    this.unsubscribe?.();
    clearInterval(this.timer);
    this.loaded = false;
    this.byId.clear();
  }

  /** Reads every CRI container of this node again (after a reconnect, or now and then). */
  async resync(): Promise<void> {
    const started = new Map(this.gen);
    const startCounter = this.counter;
    const all = await this.inner.listContainers({ [CriLabel.kind]: '' });
    const seen = new Set<string>();
    for (const info of all) {
      if (info.container.node !== this.node) continue;
      const id = info.container.id;
      seen.add(id);
      if ((this.gen.get(id) ?? 0) === (started.get(id) ?? 0)) this.byId.set(id, info);
    }
    for (const id of [...this.byId.keys()]) {
      // Gone from the list and not touched since the list was asked for: deleted meanwhile.
      if (!seen.has(id) && (this.gen.get(id) ?? 0) <= startCounter) this.byId.delete(id);
    }
    this.loaded = true;
  }

  /** Reads one container again; the newest refresh of an id wins. */
  private refresh(id: string): Promise<void> {
    const g = ++this.counter;
    this.gen.set(id, g);
    const p = this.inner.getContainer(id).then(
      (info) => {
        if (this.gen.get(id) !== g || info.container.id !== id) return;
        if (info.container.node === this.node) this.byId.set(id, this.keepExit(info));
      },
      (err: unknown) => {
        if (this.gen.get(id) !== g) return;
        if (toBerthError(err).code === Code.NOT_FOUND) this.byId.delete(id);
        else {
          // Unknown now: later reads of it go to the task-service until a refresh lands.
          this.byId.delete(id);
          this.onError(err);
        }
      },
    );
    const done = p.finally(() => {
      if (this.pending.get(id) === done) this.pending.delete(id);
    });
    this.pending.set(id, done);
    return done;
  }

  /**
   * An exit as the task-service will record it (same pid, first exit wins). A refresh read before
   * the task-service recorded it must not bring the process back: keepExit holds it.
   */
  private applyExit(id: string, e: ExitEvent): void {
    const cur = this.byId.get(id);
    if (!cur?.task || cur.task.status === 'stopped' || (cur.task.pid !== 0 && cur.task.pid !== e.pid)) return;
    const task = {
      ...cur.task,
      status: 'stopped' as const,
      exitCode: e.exitCode,
      exitedAt: e.exitedAt,
      reason: exitReason(e.exitCode, e.reason),
    };
    this.byId.set(id, { ...cur, task, status: 'stopped' });
  }

  /** `fresh`, unless it shows alive a process the view already saw exit. */
  private keepExit(fresh: ContainerInfo): ContainerInfo {
    const cur = this.byId.get(fresh.container.id);
    if (cur?.task?.status === 'stopped' && fresh.task && fresh.task.status !== 'stopped') {
      if (fresh.task.pid === cur.task.pid && fresh.task.createdAt === cur.task.createdAt) return cur;
    }
    return fresh;
  }

  /** Runs a write, then refreshes what it changed (reads of it wait for that). */
  private async write<T>(id: string, work: () => Promise<T>): Promise<T> {
    try {
      return await work();
    } finally {
      const full = this.fullId(id);
      if (this.loaded && full) void this.refresh(full);
    }
  }

  /** The full id `ref` names in the view (itself, or a unique prefix); undefined when none or several. */
  private fullId(ref: string): string | undefined {
    if (this.byId.has(ref)) return ref;
    const matches = [...this.byId.keys()].filter((k) => k.startsWith(ref));
    return matches.length === 1 ? matches[0] : undefined;
  }

  async getContainer(id: string): Promise<ContainerInfo> {
    if (!this.loaded) return this.inner.getContainer(id);
    await this.pending.get(id);
    const hit = this.byId.get(id);
    if (hit) return hit;
    // A prefix, a name, another node's container or one not seen yet: ask, and keep ours.
    const info = await this.inner.getContainer(id);
    const full = info.container.id;
    if (info.container.node === this.node && !this.byId.has(full) && !this.pending.has(full)) {
      void this.refresh(full);
    }
    return info;
  }

  async listContainers(labels: Record<string, string>): Promise<ContainerInfo[]> {
    if (!this.loaded || labels[CriLabel.kind] === undefined) return this.inner.listContainers(labels);
    await Promise.all(this.pending.values());
    const want = Object.entries(labels);
    return [...this.byId.values()].filter((i) =>
      want.every(([k, v]) => {
        const have = i.container.labels[k];
        return have !== undefined && (v === '' || have === v);
      }),
    );
  }

  createContainer: TaskPort['createContainer'] = async (req) => {
    const c = await this.inner.createContainer(req);
    if (this.loaded) void this.refresh(c.id);
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

/** The fields of a `tasks.exit` event the view applies. */
interface ExitEvent {
  pid: number;
  exitCode: number;
  exitedAt: string;
  reason?: string;
}
