import { TaskTopic, toBerthError } from '@berth/api';
import type { Logger } from '@berth/kit';
import { CRI_NAMESPACE } from '../images/ports.js';
import type { ContainerRuntime } from './containers.js';
import { PodState, toContainerStatus, type toPodSandboxStatus } from './cri-status.js';
import { atLeast, type CriContainerStatus, CriEventType, EventOrder } from './event-order.js';
import { CriKind, CriLabel, isoToNs, kindOf } from './meta.js';
import type { PodRuntime } from './pods.js';

export { CriEventType } from './event-order.js';

/** Subscribes to berth's events (topic, namespace, payload, time); returns how to unsubscribe. */
export type EventSource = (
  onEvent: (e: { topic: string; namespace: string; timestamp: string; event: unknown }) => void,
) => () => void;

const TYPES: Record<string, CriEventType> = {
  [TaskTopic.containerCreate]: CriEventType.created,
  [TaskTopic.taskStart]: CriEventType.started,
  [TaskTopic.taskExit]: CriEventType.stopped,
  [TaskTopic.containerDelete]: CriEventType.deleted,
};

/** Names the CRI gives its task-service containers (meta.ts): how a deleted one is recognised. */
const CRI_NAME = /^k8s-(pod|ctr)-[a-f0-9]{40}$/;

type Queued = { topic: string; timestamp: string; event: Record<string, unknown> };
type PodStatus = ReturnType<typeof toPodSandboxStatus>;

/**
 * What one stream remembers of the pods it reported: the pod of each container, and each pod's
 * last status, so a container's delete (its record gone) still names its pod, and the delete of a
 * pod itself carries the pod as it last was.
 */
interface Memory {
  podOf: Map<string, string>;
  lastPod: Map<string, PodStatus>;
}

/**
 * GetContainerEvents: berth's container and task events in the CRI namespace as CRI container
 * events until `signal` aborts. Each carries, as containerd's does, its pod's status and the
 * statuses of all the pod's containers as they are when it is sent (the kubelet's evented PLEG
 * takes them as the whole pod); a container's events leave in the order they happened (see
 * EventOrder). Events of processes run by exec and of containers the CRI did not make are
 * skipped, and so is the delete of a container whose pod the stream never knew, and (logged) an
 * event whose container or pod cannot be read when it comes. Core NATS is
 * at-most-once, so like the kubelet's own relist, a consumer must not rely on seeing every event.
 */
export async function* containerEvents(o: {
  source: EventSource;
  pods: PodRuntime;
  containers: ContainerRuntime;
  signal: AbortSignal;
  log: Pick<Logger, 'warn'>;
}): AsyncGenerator<unknown> {
  const { source, pods, containers, signal, log } = o;
  const queue: Queued[] = [];
  let wake: (() => void) | undefined;
  const unsubscribe = source((e) => {
    if (e.namespace !== CRI_NAMESPACE || !TYPES[e.topic]) return;
    const ev = (e.event ?? {}) as Record<string, unknown>;
    if (ev.execId) return;
    queue.push({ topic: e.topic, timestamp: e.timestamp, event: ev });
    wake?.();
  });
  const aborted = () => wake?.();
  signal.addEventListener('abort', aborted);
  const order = new EventOrder();
  try {
    // Subscribed first: what happens while the pods are read waits in the queue.
    const memory = await remember(pods, containers);
    while (!signal.aborted) {
      const next = queue.shift();
      if (!next) {
        await new Promise<void>((r) => {
          wake = r;
        });
        wake = undefined;
        continue;
      }
      let msgs: unknown[];
      try {
        msgs = await toEvents(next, { pods, containers, order, memory });
      } catch (err) {
        // An event whose container or pod cannot be read now (a service restarting) is logged and
        // skipped, and the stream goes on: containerd sends such an event with no pod status, which
        // the kubelet drops. Ending the stream would cost the kubelet every later event until it
        // subscribes again, where the pod's next event carries every container's state as it is.
        log.warn(
          { err: toBerthError(err).message, id: next.event.id, topic: next.topic },
          'GetContainerEvents: an event was skipped, its container or pod could not be read',
        );
        continue;
      }
      for (const msg of msgs) yield msg;
    }
  } finally {
    signal.removeEventListener('abort', aborted);
    unsubscribe();
  }
}

/**
 * The pods and containers there are when a stream starts (read from the gateway's memory); when
 * they cannot be read, the stream learns them from their events alone.
 */
async function remember(pods: PodRuntime, containers: ContainerRuntime): Promise<Memory> {
  const memory: Memory = { podOf: new Map(), lastPod: new Map() };
  try {
    for (const p of await pods.list(null)) {
      memory.podOf.set(p.id, p.id);
      const st = await pods.status(p.id).catch(() => undefined);
      if (st) memory.lastPod.set(p.id, st.status);
    }
    for (const c of await containers.list(null)) memory.podOf.set(c.id, c.pod_sandbox_id);
  } catch {
    // Events still come; a delete of what the stream never learned is skipped.
  }
  return memory;
}

async function toEvents(
  e: Queued,
  d: { pods: PodRuntime; containers: ContainerRuntime; order: EventOrder; memory: Memory },
): Promise<unknown[]> {
  const id = typeof e.event.id === 'string' ? e.event.id : '';
  const type = TYPES[e.topic];
  if (!type) return [];
  if (type === CriEventType.deleted) {
    const name = typeof e.event.name === 'string' ? e.event.name : '';
    const podId = d.memory.podOf.get(id);
    if (!CRI_NAME.test(name) || d.order.next(id, type).length === 0 || podId === undefined) return [];
    d.memory.podOf.delete(id);
    const pod = await podNow(podId, d);
    if (![...d.memory.podOf.values()].includes(podId)) d.memory.lastPod.delete(podId);
    return pod ? [{ ...base(id, type, e.timestamp), ...pod }] : [];
  }
  let podId = id;
  let own: CriContainerStatus | undefined;
  try {
    const sb = await d.pods.get(id).catch(() => undefined);
    if (!sb) {
      const c = await d.containers.get(id);
      if (kindOf(c.container) !== CriKind.container) return [];
      podId = c.container.labels[CriLabel.sandboxId] ?? '';
      own = atLeast(toContainerStatus(c), type, e);
    }
  } catch (err) {
    // Removed before we looked: its delete event follows.
    if (toBerthError(err).code === 'NOT_FOUND') return [];
    throw err;
  }
  d.memory.podOf.set(id, podId);
  const pod = await podNow(podId, d);
  if (!pod) return [];
  // The view may not list a container whose create is still replying, nor show its latest state.
  const statuses = own
    ? [...pod.containers_statuses.filter((s) => s.id !== id), own]
    : pod.containers_statuses;
  return d.order.next(id, type).map((t) => ({
    ...base(id, t, t === type ? e.timestamp : startedAt(own, e.timestamp)),
    pod_sandbox_status: pod.pod_sandbox_status,
    containers_statuses: statuses,
  }));
}

function base(id: string, type: CriEventType, timestamp: string) {
  return { container_id: id, container_event_type: type, created_at: isoToNs(timestamp) };
}

/** The time of a start sent ahead of its own event: the container's start time, if known. */
function startedAt(s: CriContainerStatus | undefined, fallback: string): string {
  const ns = s ? BigInt(s.started_at) : 0n;
  return ns > 0n ? new Date(Number(ns / 1_000_000n)).toISOString() : fallback;
}

/**
 * The pod's status (as PodSandboxStatus answers it, not verbose) and its containers' now; a pod
 * already gone is reported as it last was, not ready, with no containers; undefined when the
 * stream never saw it.
 */
async function podNow(
  podId: string,
  d: { pods: PodRuntime; memory: Memory },
): Promise<{ pod_sandbox_status: PodStatus; containers_statuses: CriContainerStatus[] } | undefined> {
  try {
    const { status, containers } = await d.pods.status(podId);
    d.memory.lastPod.set(podId, status);
    return { pod_sandbox_status: status, containers_statuses: containers };
  } catch (err) {
    if (toBerthError(err).code !== 'NOT_FOUND') throw err;
  }
  const last = d.memory.lastPod.get(podId);
  if (!last) return undefined;
  const gone = { ...last, state: PodState.notReady, network: { ip: '', additional_ips: [] } };
  return { pod_sandbox_status: gone, containers_statuses: [] };
}
