import { createHash } from 'node:crypto';
import { BerthError, Code, type Container } from '@berth/api';

/**
 * Labels the CRI gateway puts on the task-service containers it makes. The task-service owns the
 * container record; the CRI facts of a pod or container (its CRI labels, annotations, metadata,
 * network) live in it as one JSON label, so each fact has one owner and one place.
 */
export const CriLabel = {
  kind: 'io.berth.cri.kind',
  sandboxId: 'io.berth.cri.sandbox-id',
  meta: 'io.berth.cri.meta',
} as const;

/** What a CRI-made container is: a pod's pause container or an application container. */
export const CriKind = { sandbox: 'sandbox', container: 'container' } as const;
export type CriKind = (typeof CriKind)[keyof typeof CriKind];

/** CRI NamespaceMode names (proto enum, as grpc-js gives them with enums: String). */
export const NsMode = { POD: 'POD', CONTAINER: 'CONTAINER', NODE: 'NODE', TARGET: 'TARGET' } as const;
export type NsMode = (typeof NsMode)[keyof typeof NsMode];

/** The namespace choices of a pod or container (CRI NamespaceOption). */
export interface NamespaceOptions {
  network: NsMode;
  pid: NsMode;
  ipc: NsMode;
  target_id: string;
}

/** The CRI facts of a pod sandbox, stored in its pause container's meta label. */
export interface SandboxMeta {
  metadata: { name: string; uid: string; namespace: string; attempt: number };
  labels: Record<string, string>;
  annotations: Record<string, string>;
  hostname: string;
  logDirectory: string;
  runtimeHandler: string;
  namespaceOptions: NamespaceOptions;
  /** Key of the pod's network (absent in the host network). */
  netKey?: string;
  /** cgroup parent of the pod's containers ("" for berth's default). */
  cgroupParent: string;
  netnsPath?: string;
  /** The pod's addresses from its CNI network (first is primary; absent in the host network). */
  ips?: string[];
  /** Creation time in ns since the epoch, as a decimal string (CRI int64). */
  createdAt: string;
  /**
   * The pause container has the pod's shareable /dev/shm (see sandbox-spec.ts podShm). Absent on a
   * pod made before berth shared it: its containers keep a /dev/shm of their own, as they had.
   */
  sharedShm?: boolean;
}

/** The CRI facts of a container, stored in its meta label. */
export interface ContainerMeta {
  metadata: { name: string; attempt: number };
  labels: Record<string, string>;
  annotations: Record<string, string>;
  /**
   * The image as the status reports it (containerd's way: its first repo tag at create, else the
   * name the kubelet gave, often the image id), and the image id (config digest) it resolved to.
   */
  image: string;
  imageRef: string;
  /** The first repo digest (`repo@sha256:<manifest>`) at create: the status's image_ref. */
  imageDigestRef?: string;
  /** ImageSpec.user_specified_image as the kubelet sent it (the pod spec's image). */
  userImage?: string;
  /** Full path of the CRI log, or "" without one. */
  logPath: string;
  mounts: unknown[];
  namespaceOptions: NamespaceOptions;
  /** CRI stdin_once (absent in containers created before it was recorded). */
  stdinOnce?: boolean;
  createdAt: string;
  /**
   * Its StartContainer failed (the runtime could not run its command): the container is exited,
   * as containerd's CRI marks it, with START_ERROR's exit code and reason and this message.
   */
  startFailure?: StartFailure;
}

/** A StartContainer that failed: why, and when (ns since the epoch, decimal string). */
export interface StartFailure {
  message: string;
  finishedAt: string;
}

/** What a container whose start failed reports: containerd's errorStartExitCode and errorStartReason. */
export const START_ERROR = { exitCode: 128, reason: 'StartError' } as const;

/** Now in ns since the epoch, as CRI timestamps are (a decimal string: it exceeds 2^53). */
export function nowNs(): string {
  return (BigInt(Date.now()) * 1_000_000n).toString();
}

/** An ISO time as ns since the epoch (decimal string); "0" when absent. */
export function isoToNs(iso: string | undefined): string {
  if (!iso) return '0';
  const ms = Date.parse(iso);
  return Number.isNaN(ms) ? '0' : (BigInt(ms) * 1_000_000n).toString();
}

/**
 * The task-service name of a pod's pause container: one per (name, namespace, uid, attempt), so
 * a second RunPodSandbox with the same metadata fails ALREADY_EXISTS, as containerd's does.
 */
export function sandboxName(m: SandboxMeta['metadata']): string {
  return `k8s-pod-${hash([m.name, m.namespace, m.uid, String(m.attempt)])}`;
}

/** The task-service name of a container: unique per (pod, name, attempt). */
export function containerName(sandboxId: string, m: ContainerMeta['metadata']): string {
  return `k8s-ctr-${hash([sandboxId, m.name, String(m.attempt)])}`;
}

function hash(parts: string[]): string {
  return createHash('sha256').update(JSON.stringify(parts)).digest('hex').slice(0, 40);
}

/** The CRI kind of a task-service container, or undefined for one the CRI did not make. */
export function kindOf(c: Container): CriKind | undefined {
  const k = c.labels[CriLabel.kind];
  return k === CriKind.sandbox || k === CriKind.container ? k : undefined;
}

/** Reads the meta label of a CRI-made container (INTERNAL when it is missing or broken). */
export function metaOf<T extends SandboxMeta | ContainerMeta>(c: Container): T {
  const raw = c.labels[CriLabel.meta];
  try {
    if (raw) return JSON.parse(raw) as T;
  } catch {
    // fall through to the error naming the container
  }
  throw new BerthError(Code.INTERNAL, `container ${c.id} has no readable ${CriLabel.meta} label`);
}
