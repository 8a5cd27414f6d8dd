import { TaskTopic, toBerthError } from '@berth/api';
import { CRI_NAMESPACE } from '../images/ports.js';
import type { ContainerRuntime } from './containers.js';
import { toContainerStatus, toPodSandboxStatus } from './cri-status.js';
import { CriKind, CriLabel, isoToNs, kindOf } from './meta.js';
import type { PodRuntime } from './pods.js';

/** Subscribes to berth's events (topic, namespace, payload, time); returns how to unsubscribe. */
export type EventSource = (
  onEvent: (e: { topic: string; namespace: string; timestamp: string; event: unknown }) => void,
) => () => void;

/** CRI ContainerEventType names. */
export const CriEventType = {
  created: 'CONTAINER_CREATED_EVENT',
  started: 'CONTAINER_STARTED_EVENT',
  stopped: 'CONTAINER_STOPPED_EVENT',
  deleted: 'CONTAINER_DELETED_EVENT',
} as const;

const TYPES: Record<string, string> = {
  [TaskTopic.containerCreate]: CriEventType.created,
  [TaskTopic.taskStart]: CriEventType.started,
  [TaskTopic.taskExit]: CriEventType.stopped,
  [TaskTopic.containerDelete]: CriEventType.deleted,
};

/** Names the CRI gives its task-service containers (meta.ts): how a deleted one is recognised. */
const CRI_NAME = /^k8s-(pod|ctr)-[a-f0-9]{40}$/;

/**
 * GetContainerEvents: berth's container and task events in the CRI namespace as CRI container
 * events, each with the pod's status and the statuses it concerns, until `signal` aborts. Events
 * of processes run by exec and of containers the CRI did not make are skipped. Core NATS is
 * at-most-once, so like the kubelet's own relist, a consumer must not rely on seeing every event.
 */
export async function* containerEvents(
  source: EventSource,
  pods: PodRuntime,
  containers: ContainerRuntime,
  signal: AbortSignal,
): AsyncGenerator<unknown> {
  const queue: { topic: string; timestamp: string; event: Record<string, unknown> }[] = [];
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
  try {
    while (!signal.aborted) {
      const next = queue.shift();
      if (!next) {
        await new Promise<void>((r) => {
          wake = r;
        });
        wake = undefined;
        continue;
      }
      const msg = await toEvent(next, pods, containers);
      if (msg) yield msg;
    }
  } finally {
    signal.removeEventListener('abort', aborted);
    unsubscribe();
  }
}

async function toEvent(
  e: { topic: string; timestamp: string; event: Record<string, unknown> },
  pods: PodRuntime,
  containers: ContainerRuntime,
) {
  const id = typeof e.event.id === 'string' ? e.event.id : '';
  const base = { container_id: id, container_event_type: TYPES[e.topic], created_at: isoToNs(e.timestamp) };
  if (e.topic === TaskTopic.containerDelete) {
    const name = typeof e.event.name === 'string' ? e.event.name : '';
    return CRI_NAME.test(name) ? { ...base, pod_sandbox_status: null, containers_statuses: [] } : undefined;
  }
  try {
    const sb = await pods.get(id).catch(() => undefined);
    if (sb) {
      const inPod = await pods.containersOf(sb.info.container.id);
      return {
        ...base,
        pod_sandbox_status: toPodSandboxStatus(sb.info),
        containers_statuses: inPod.map(toContainerStatus),
      };
    }
    const c = await containers.get(id);
    if (kindOf(c.container) !== CriKind.container) return undefined;
    const pod = await pods.get(c.container.labels[CriLabel.sandboxId] ?? '').catch(() => undefined);
    return {
      ...base,
      pod_sandbox_status: pod ? toPodSandboxStatus(pod.info) : null,
      containers_statuses: [toContainerStatus(c)],
    };
  } catch (err) {
    // Removed before we looked: its delete event follows.
    if (toBerthError(err).code === 'NOT_FOUND') return undefined;
    throw err;
  }
}
