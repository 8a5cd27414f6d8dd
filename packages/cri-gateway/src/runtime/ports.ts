import type {
  Container,
  ContainerInfo,
  CreateContainerRequest,
  CreateTaskReply,
  ExecRequest,
  ExitStatus,
  ImportImageReply,
  KillRequest,
  ProcessState,
  Resources,
  ShimBandwidth,
  ShimCniDns,
  ShimPodIdentity,
  ShimStats,
  UpdateContainerRequest,
} from '@berth/api';
import type { CriOutput } from '@berth/shim/cri-log';

/**
 * What the CRI RuntimeService needs from the task-service, bound to the CRI namespace (k8s.io).
 * The gateway passes one that goes over NATS; the domain never sees NATS.
 */
export interface TaskPort {
  createContainer(req: CreateContainerRequest): Promise<Container>;
  /** A container by id, unique id prefix or name; NOT_FOUND when absent. */
  getContainer(id: string): Promise<ContainerInfo>;
  /** Containers whose labels match every entry ("" only has to exist). */
  listContainers(labels: Record<string, string>): Promise<ContainerInfo[]>;
  updateContainer(req: UpdateContainerRequest): Promise<Container>;
  /** New limits on a live task (and in its container's spec). */
  updateTask(id: string, resources: Resources): Promise<void>;
  /**
   * Removes a container; force kills and deletes a live task first. With `background` the call
   * returns once the record is gone and the task-service frees its node resources after.
   */
  deleteContainer(id: string, force: boolean, background?: boolean): Promise<void>;
  /**
   * Creates the container's task; with `start` starts it in the same call (no task left if that
   * fails); with `netnsPod` the node's shim pins that pod network's namespace first, unless it is.
   */
  createTask(id: string, opts?: { start?: boolean; netnsPod?: string }): Promise<CreateTaskReply>;
  start(id: string, execId?: string): Promise<ProcessState>;
  kill(req: KillRequest): Promise<void>;
  /** Resolves on exit, or fails DEADLINE_EXCEEDED after timeoutMs. */
  wait(id: string, opts: { execId?: string; timeoutMs?: number }): Promise<ExitStatus>;
  /** Deletes a stopped task (or exec) and returns its exit. */
  deleteTask(id: string, execId?: string): Promise<ExitStatus>;
  exec(req: ExecRequest): Promise<ProcessState>;
  stats(id: string): Promise<ShimStats>;
}

/** What the RuntimeService asks this node's shim directly (host-local facts of a task). */
export interface ShimPort {
  /**
   * What a process wrote, as bytes, read back from its CRI log at `logPath` (a path on this node,
   * as the task-service reports it), each stream cut at `maxBytesPerStream`.
   */
  readLog(logPath: string, maxBytesPerStream: number): Promise<CriOutput>;
  /** Makes the task's monitor reopen its log file (after the kubelet rotated it). */
  reopenLog(id: string): Promise<void>;
}

/** Imports an OCI image-layout tar into the CRI namespace of this node's image-service. */
export type ImageImporter = (path: string, name: string) => Promise<ImportImageReply>;

/** The network of one pod: where its network namespace is, and its addresses (first is primary). */
export interface PodNetworkResult {
  netnsPath: string;
  ips: string[];
}

/** What the pod CIDR did: the subnet pods now get, or why the node's CNI config was kept. */
export interface PodCidrOutcome {
  applied: boolean;
  subnet?: string;
  reason: string;
}

/** Whether the node's pod network can take pods (CRI NetworkReady), and why not. */
export interface NetworkReadiness {
  ready: boolean;
  /** What is wrong ("" when ready). */
  message: string;
}

/**
 * Sets up and tears down a pod's network on this node: a CNI network through the node's shim,
 * which owns every network namespace and lease. Teardown of a pod without a network is success:
 * stop and remove call it again.
 */
export interface PodNetwork {
  /**
   * The path of the pod's network namespace, pinned by the node's shim at whichever comes first:
   * setup(), or the pause container's task create naming the pod (TaskPort createTask `netnsPod`).
   */
  netnsPath(podKey: string): string;
  /**
   * Attaches the pod (making its namespace first unless the pause's task create did), telling the
   * CNI plugins who it is and its bandwidth and DNS (see PodNetworkSetup).
   */
  setup(podKey: string, opts: PodNetworkSetup): Promise<PodNetworkResult>;
  teardown(podKey: string): Promise<void>;
  /**
   * The keys of the CRI pod networks on this node, set up or with a namespace only (to find those
   * no pod owns any more).
   */
  list(): Promise<string[]>;
  /** Gives the node's default pod network the kubelet's pod CIDRs, where it is berth's to change. */
  usePodCidrs(cidrs: string[]): Promise<PodCidrOutcome>;
  /** Whether pods can get a network now: the node answers with a usable default network. */
  readiness(): Promise<NetworkReadiness>;
}

/** What a pod's CNI ADD is run with, as containerd's CRI passes it (cniNamespaceOpts). */
export interface PodNetworkSetup {
  portMappings: PortMapping[];
  /** The pod's metadata and sandbox id: CNI_ARGS K8S_POD_* on ADD and DEL. */
  pod: ShimPodIdentity;
  /** From the pod's kubernetes.io/{ingress,egress}-bandwidth annotations (see podBandwidth). */
  bandwidth?: ShimBandwidth;
  /** The pod's DNSConfig, for plugins with the `dns` capability. */
  dns?: ShimCniDns;
}

/** A CRI port mapping, as the network plugin needs it. */
export interface PortMapping {
  protocol: 'TCP' | 'UDP' | 'SCTP';
  containerPort: number;
  hostPort: number;
  hostIp: string;
}
