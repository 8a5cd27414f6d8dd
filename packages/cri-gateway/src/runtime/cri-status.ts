import type { ContainerInfo } from '@berth/api';
import { type ContainerMeta, CriLabel, isoToNs, metaOf, type SandboxMeta, START_ERROR } from './meta.js';

/** The CFS period berth writes with a CPU limit (task-service spec defaults). */
const CPU_PERIOD_US = 100_000;

/** CRI PodSandboxState names. */
export const PodState = { ready: 'SANDBOX_READY', notReady: 'SANDBOX_NOTREADY' } as const;
export type PodState = (typeof PodState)[keyof typeof PodState];

/** CRI ContainerState names. */
export const CtrState = {
  created: 'CONTAINER_CREATED',
  running: 'CONTAINER_RUNNING',
  exited: 'CONTAINER_EXITED',
  unknown: 'CONTAINER_UNKNOWN',
} as const;
export type CtrState = (typeof CtrState)[keyof typeof CtrState];

/** A pod is ready while its pause process runs. */
export function podState(info: ContainerInfo): PodState {
  return info.status === 'running' ? PodState.ready : PodState.notReady;
}

/**
 * The CRI state of a container from its task: none or created is CREATED (EXITED once its start
 * failed), paused is RUNNING.
 */
export function containerState(info: ContainerInfo): CtrState {
  switch (info.status) {
    case 'created':
      return startFailureOf(info) ? CtrState.exited : CtrState.created;
    case 'running':
    case 'paused':
      return CtrState.running;
    case 'stopped':
      return CtrState.exited;
    default:
      return CtrState.unknown;
  }
}

/** The failed StartContainer of a container without a task, if it had one. */
export function startFailureOf(info: ContainerInfo): ContainerMeta['startFailure'] {
  // Only a container without a running task can have failed to start: no meta read for the rest.
  if (info.status !== 'created') return undefined;
  return metaOf<ContainerMeta>(info.container).startFailure;
}

/** CRI PodSandbox (ListPodSandbox) of a pause container. */
export function toPodSandbox(info: ContainerInfo) {
  const m = metaOf<SandboxMeta>(info.container);
  return {
    id: info.container.id,
    metadata: m.metadata,
    state: podState(info),
    created_at: m.createdAt,
    labels: m.labels,
    annotations: m.annotations,
    runtime_handler: m.runtimeHandler,
  };
}

// Records are replaced, never changed in place (mirror.ts): a status built from one is kept with
// it, so a repeated read neither parses the meta label nor builds the object again.
const podStatuses = new WeakMap<ContainerInfo, ReturnType<typeof buildPodSandboxStatus>>();
const containerStatuses = new WeakMap<ContainerInfo, ReturnType<typeof buildContainerStatus>>();

/** CRI PodSandboxStatus of a pause container (the same object for the same record). */
export function toPodSandboxStatus(info: ContainerInfo) {
  const kept = podStatuses.get(info);
  if (kept) return kept;
  const s = buildPodSandboxStatus(info);
  podStatuses.set(info, s);
  return s;
}

function buildPodSandboxStatus(info: ContainerInfo) {
  const m = metaOf<SandboxMeta>(info.container);
  const { network, pid, ipc, target_id } = m.namespaceOptions;
  // A pod that is not ready (stopped: its network torn down and its address given back) reports
  // no address, as containerd once its netns is closed; the kubelet reads it of ready pods only.
  const ips = podState(info) === PodState.ready ? (m.ips ?? []) : [];
  return {
    ...toPodSandbox(info),
    network: { ip: ips[0] ?? '', additional_ips: ips.slice(1).map((ip) => ({ ip })) },
    linux: { namespaces: { options: { network, pid, ipc, target_id } } },
  };
}

/**
 * A container's ImageSpec as its status reports it: the image's first repo tag at create (or the
 * name the kubelet gave), with the user's own name echoed back.
 */
function criImageSpec(m: ContainerMeta) {
  return { image: m.image, annotations: {}, user_specified_image: m.userImage ?? '' };
}

/**
 * CRI Container (ListContainers) of an application container. Its image is named by the image's
 * id (its config digest) in `image`, `image_ref` and `image_id`, as containerd lists it: the
 * kubelet's image garbage collector takes a listed container's `image_ref` as the id of an image
 * in use and matches it against ListImages' ids (a tag or repo digest there matches none, and
 * every image in use would look unused). ContainerStatus names it as asked (criImageSpec).
 */
export function toCriContainer(info: ContainerInfo) {
  const m = metaOf<ContainerMeta>(info.container);
  return {
    id: info.container.id,
    pod_sandbox_id: info.container.labels[CriLabel.sandboxId] ?? '',
    metadata: m.metadata,
    image: { image: m.imageRef, annotations: {}, user_specified_image: m.userImage ?? '' },
    image_ref: m.imageRef,
    image_id: m.imageRef,
    state: containerState(info),
    created_at: m.createdAt,
    labels: m.labels,
    annotations: m.annotations,
  };
}

/** CRI ContainerStatus of an application container (the same object for the same record). */
export function toContainerStatus(info: ContainerInfo) {
  const kept = containerStatuses.get(info);
  if (kept) return kept;
  const s = buildContainerStatus(info);
  containerStatuses.set(info, s);
  return s;
}

function buildContainerStatus(info: ContainerInfo) {
  const m = metaOf<ContainerMeta>(info.container);
  const t = info.task;
  const state = containerState(info);
  const exited = state === CtrState.exited;
  const failed = info.status === 'created' ? m.startFailure : undefined;
  return {
    id: info.container.id,
    metadata: m.metadata,
    state,
    created_at: m.createdAt,
    started_at: isoToNs(t?.startedAt),
    finished_at: failed ? failed.finishedAt : exited ? isoToNs(t?.exitedAt) : '0',
    exit_code: failed ? START_ERROR.exitCode : exited ? (t?.exitCode ?? 0) : 0,
    image: criImageSpec(m),
    image_ref: m.imageDigestRef ?? m.imageRef,
    image_id: m.imageRef,
    reason: failed
      ? START_ERROR.reason
      : exited
        ? (t?.reason ?? (t?.exitCode === 0 ? 'Completed' : 'Error'))
        : '',
    message: failed?.message ?? '',
    labels: m.labels,
    annotations: m.annotations,
    mounts: m.mounts,
    log_path: m.logPath,
    resources: { linux: criResources(info), windows: null },
    user: criUser(info),
  };
}

/** The limits in the container's spec as CRI LinuxContainerResources (what the kubelet resizes). */
function criResources(info: ContainerInfo) {
  const r = info.container.config.resources ?? {};
  const quota = r.cpus !== undefined ? Math.round(r.cpus * CPU_PERIOD_US) : 0;
  return {
    cpu_period: String(quota ? CPU_PERIOD_US : 0),
    cpu_quota: String(quota),
    cpu_shares: String(r.cpuShares ?? 0),
    memory_limit_in_bytes: String(r.memoryBytes ?? 0),
    oom_score_adj: String(info.container.config.oomScoreAdj ?? 0),
    cpuset_cpus: r.cpusetCpus ?? '',
    cpuset_mems: r.cpusetMems ?? '',
    hugepage_limits: [],
    unified: r.unified ?? {},
    memory_swap_limit_in_bytes: String(r.memorySwapBytes ?? 0),
  };
}

/** The user the container's process runs as (from its spec, after names were resolved). */
function criUser(info: ContainerInfo) {
  const u = ((info.container.spec.process as { user?: Record<string, unknown> } | undefined)?.user ?? {}) as {
    uid?: number;
    gid?: number;
    additionalGids?: number[];
  };
  return {
    linux: {
      uid: String(u.uid ?? 0),
      gid: String(u.gid ?? 0),
      supplemental_groups: (u.additionalGids ?? []).map(String),
    },
  };
}
