import { exitReason } from '@berth/api';
import { CtrState, type toContainerStatus } from './cri-status.js';
import { isoToNs } from './meta.js';

/** CRI ContainerEventType names. */
export const CriEventType = {
  created: 'CONTAINER_CREATED_EVENT',
  started: 'CONTAINER_STARTED_EVENT',
  stopped: 'CONTAINER_STOPPED_EVENT',
  deleted: 'CONTAINER_DELETED_EVENT',
} as const;
export type CriEventType = (typeof CriEventType)[keyof typeof CriEventType];

const RANK: Record<CriEventType, number> = {
  [CriEventType.created]: 0,
  [CriEventType.started]: 1,
  [CriEventType.stopped]: 2,
  [CriEventType.deleted]: 3,
};

/** A CRI ContainerStatus as the gateway builds it. */
export type CriContainerStatus = ReturnType<typeof toContainerStatus>;

/**
 * Per container of one GetContainerEvents stream, the last event type it sent, so a container's
 * events leave as they happened. `tasks.exit` comes from the shim and `tasks.start` from the
 * task-service: two publishers, which NATS does not order between them, so a process that exits
 * at once often has its exit arrive first. The exit proves the start: the stream then sends the
 * start before the stop, and the start's own event, when it comes, is dropped as stale.
 */
export class EventOrder {
  private readonly last = new Map<string, CriEventType>();

  /**
   * The event types to send, in order, for an event of `type` about container `id`: none when a
   * later one was sent already, the start then the stop when a stop follows a create directly.
   */
  next(id: string, type: CriEventType): CriEventType[] {
    const prev = this.last.get(id);
    if (prev !== undefined && RANK[type] <= RANK[prev]) return [];
    if (type === CriEventType.deleted) this.last.delete(id);
    else this.last.set(id, type);
    if (type === CriEventType.stopped && prev === CriEventType.created) {
      return [CriEventType.started, CriEventType.stopped];
    }
    return [type];
  }
}

/** The fields of a `tasks.exit` event a stop's status is brought up to. */
interface ExitFields {
  exitCode?: unknown;
  exitedAt?: unknown;
  reason?: unknown;
}

/**
 * `s` brought up to at least the state event `type` says the container reached: the gateway's
 * view may not hold it yet (a start's reply, or the exit of a task whose create reply is on its
 * way), and an event must never show an older state than its own. A stop's exit comes from the
 * `tasks.exit` event itself; a start with no start time yet takes the event's time, a stop the
 * exit's.
 */
export function atLeast(
  s: CriContainerStatus,
  type: CriEventType,
  event: { timestamp: string; event: ExitFields },
): CriContainerStatus {
  const startedAt = s.started_at !== '0' ? s.started_at : isoToNs(event.timestamp);
  if (type === CriEventType.started && s.state === CtrState.created) {
    return { ...s, state: CtrState.running, started_at: startedAt };
  }
  if (type !== CriEventType.stopped || s.state === CtrState.exited) return s;
  const e = event.event;
  const exitCode = typeof e.exitCode === 'number' ? e.exitCode : 0;
  const exitedAt = typeof e.exitedAt === 'string' ? e.exitedAt : event.timestamp;
  return {
    ...s,
    state: CtrState.exited,
    // Not known yet when the exit overtook the start's reply: no later than the exit, then.
    started_at: s.started_at !== '0' ? s.started_at : isoToNs(exitedAt),
    finished_at: isoToNs(exitedAt),
    exit_code: exitCode,
    reason: exitReason(exitCode, typeof e.reason === 'string' ? e.reason : undefined),
  };
}
