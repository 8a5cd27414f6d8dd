// Contracts of the task-service (NATS: berth.task.v1.<op>, cluster-wide, queue group task-service).
// Owned by the task-service work; the CLI and the cri-gateway rely on these: extend, do not break.

import { AppArmorRequest } from './apparmor.js';
import { ShimResolvedProcess } from './capabilities.js';
import { defineService, Empty, op, Scope } from './contract.js';
import { DeviceMapping } from './devices.js';
import { ImageRecord } from './image.js';
import * as z from './lazy-zod.js';
import { PAGE_MAX_BYTES, PageReply, PageRequest } from './paging.js';
import { SeccompRequest } from './seccomp.js';
import { Hostname, isSignal, ShimPidsReply, ShimStats, Signal, TaskStatus } from './shim.js';
import { Mount } from './snapshot.js';
import { NODE_ID_PATTERN, Service } from './subjects.js';

/** Container ids: 64 lowercase hex characters, as containerd/docker. Unique prefixes are accepted. */
export const CONTAINER_ID_PATTERN = /^[a-f0-9]{64}$/;
/** Container names, as docker accepts them. Unique per namespace. */
export const CONTAINER_NAME_PATTERN = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$/;
/** The only runtime berth has: runc driven by the node's shim through conmon. */
export const RUNTIME_NAME = 'io.berth.runc';

/**
 * Largest container record (its JSON: the request it was made from, the generated OCI spec,
 * labels), in bytes (256 KiB). Every record must fit in a reply with its task (get-container, a page of
 * list-containers), so create refuses anything larger with INVALID_ARGUMENT. Half the
 * page bound: a page always has room for at least one record.
 */
export const CONTAINER_RECORD_MAX_BYTES = PAGE_MAX_BYTES / 2;

/** A bind mount from the host into the container (`-v host:ctr[:ro]`). */
export const BindMount = z.object({
  source: z.string().startsWith('/', 'bind mount source must be an absolute path'),
  destination: z.string().startsWith('/', 'bind mount destination must be an absolute path'),
  readonly: z.boolean().optional(),
  /**
   * Mount propagation (CRI's PROPAGATION_*): `private` (default), `rslave` (host mounts under the
   * source appear in the container) or `rshared` (both ways). The source must then be on a shared
   * (rshared) or shared/slave (rslave) mount on the node.
   */
  propagation: z.enum(['private', 'rslave', 'rshared']).optional(),
});
export type BindMount = z.infer<typeof BindMount>;

/** A cgroup v2 interface file name: `<controller>.<name>`, no path separator. */
export const UNIFIED_KEY = /^[a-z0-9_]+\.[a-z0-9_.]+$/;

/** A Linux CPU or memory node list: "0", "0-3", "0-3,6,8-9". */
export const CPU_LIST = /^\d+(-\d+)?(,\d+(-\d+)?)*$/;

/** Resource limits, written to linux.resources (cgroups). Values are validated, never clamped. */
export const Resources = z.object({
  /** Memory limit in bytes (at least 6 MiB, as docker requires). */
  memoryBytes: z
    .number()
    .int()
    .min(6 * 1024 * 1024, 'memory limit must be at least 6MiB')
    .optional(),
  /** CPUs as a fraction of cores (`--cpus 0.5`): quota = cpus * period. */
  cpus: z.number().positive('cpus must be positive').max(1024).optional(),
  /** CFS weight relative to other containers. */
  cpuShares: z.number().int().min(2).max(262144).optional(),
  /** Maximum number of processes; -1 or absent means unlimited. */
  pidsLimit: z.number().int().min(-1).optional(),
  /**
   * The CPUs and memory nodes the processes may use (OCI linux.resources.cpu.cpus and .mems, CRI
   * cpuset_cpus/cpuset_mems, docker's --cpuset-cpus): Linux list format, "0-3,6". Ones the node
   * does not have fail the task's create or update.
   */
  cpusetCpus: z.string().regex(CPU_LIST, 'cpuset must be a Linux CPU list such as "0-3,6"').optional(),
  cpusetMems: z.string().regex(CPU_LIST, 'cpuset must be a Linux CPU list such as "0-3,6"').optional(),
  /**
   * Memory plus swap limit in bytes (OCI linux.resources.memory.swap, docker's --memory-swap): at
   * least the memory limit (which it needs), or -1 for unlimited swap. The node must account swap
   * (memory.memsw.* on cgroup v1, memory.swap.max on v2): its shim refuses it otherwise.
   */
  memorySwapBytes: z
    .number()
    .int()
    .refine(
      (v) => v === -1 || v >= 6 * 1024 * 1024,
      'memory+swap limit must be -1 (unlimited) or at least 6MiB',
    )
    .optional(),
  /**
   * cgroup v2 files and the values to write in them (OCI linux.resources.unified, CRI `unified`),
   * e.g. `memory.oom.group: "1"`. Only a cgroup v2 node can apply them: its shim refuses them on v1.
   * An update adds to (or changes) the keys already set, as containerd's CRI merges them.
   */
  unified: z
    .record(z.string(), z.string())
    .superRefine((m, ctx) => {
      for (const k of Object.keys(m)) {
        if (UNIFIED_KEY.test(k)) continue;
        const message = `unified key "${k}" is not a cgroup v2 file name (such as "memory.oom.group")`;
        ctx.addIssue({ code: 'custom', message, path: [k] });
      }
    })
    .optional(),
});
export type Resources = z.infer<typeof Resources>;

/**
 * Network mode: `none` (a new, empty network namespace), `host` (no namespace: the host's),
 * `bridge` (a namespace on the node's default CNI network, set up by its shim: an address, and
 * `ports` published), or the path of an existing network namespace to join (what the CRI gateway
 * passes for a pod).
 */
export const NetworkMode = z.union([z.enum(['none', 'host', 'bridge']), z.string().startsWith('/')]);
export type NetworkMode = z.infer<typeof NetworkMode>;

/**
 * Mode of the pid, ipc or uts namespace: `private` (a new one, the default), `host` (none: the
 * host's), or the path of an existing namespace to join (a pod's, as the CRI gateway passes).
 */
export const NamespaceMode = z.union([z.enum(['private', 'host']), z.string().startsWith('/')]);
export type NamespaceMode = z.infer<typeof NamespaceMode>;

/** A port published from the node into a `bridge` container (`-p [HOSTIP:]HOSTPORT:PORT[/PROTO]`). */
export const PublishedPort = z.object({
  hostPort: z.number().int().min(1).max(65535),
  containerPort: z.number().int().min(1).max(65535),
  protocol: z.enum(['tcp', 'udp']).default('tcp'),
  /** Host address to bind; absent for every address. */
  hostIP: z.union([z.ipv4(), z.ipv6()]).optional(),
});
export type PublishedPort = z.infer<typeof PublishedPort>;

/** DNS settings written into the container's /etc/resolv.conf. */
export const DnsConfig = z.object({
  /** Name servers: IP addresses only (each becomes a `nameserver` line). */
  servers: z
    .array(z.union([z.ipv4(), z.ipv6()], { error: 'a DNS server must be an IPv4 or IPv6 address' }))
    .default([]),
  /** Search domains: host names (a newline or space would add lines or words to resolv.conf). */
  searches: z.array(Hostname).default([]),
  /** resolv.conf options such as `ndots:5`, `edns0`, `timeout:2`. */
  options: z
    .array(
      z
        .string()
        .regex(
          /^[A-Za-z0-9_.+-]{1,32}(:[0-9]{1,5})?$/,
          'a DNS option is a word, optionally `:N` (e.g. ndots:5)',
        ),
    )
    .default([]),
});
export type DnsConfig = z.infer<typeof DnsConfig>;

/**
 * What a user asks for when creating a container (`berth create`/`run` flags). The task-service
 * resolves the image on the node, prepares the rootfs snapshot and generates the OCI runtime spec.
 */
export const CreateContainerRequest = z.object({
  /**
   * The new container's id, chosen by the caller (the CRI gateway picks a sandbox's before the
   * call, as containerd's CRI does, so CNI ADD can name it while the record is made); default a
   * random one. ALREADY_EXISTS, nothing made, when another container has it (stored, being
   * created or being freed): pick a fresh random id for each new container. Not stored in the
   * config.
   */
  id: z.string().regex(CONTAINER_ID_PATTERN, 'invalid container id: expected 64 hex digits').optional(),
  /** Image reference as the user typed it; it must already be on the node (the CLI pulls first). */
  image: z.string().min(1),
  name: z.string().regex(CONTAINER_NAME_PATTERN, 'invalid container name').optional(),
  /** Node to run on; default the task-service caller's node (the CLI sends its own). */
  node: z.string().optional(),
  /** Replaces the image's Entrypoint (an empty array clears it). */
  entrypoint: z.array(z.string()).optional(),
  /** Replaces the image's Cmd. */
  cmd: z.array(z.string()).optional(),
  /** KEY=VALUE entries, merged over the image's Env. */
  env: z.array(z.string()).optional(),
  workdir: z.string().optional(),
  /** user[:group], names or numeric ids; names are resolved in the rootfs's /etc/passwd and /etc/group. */
  user: z.string().optional(),
  hostname: Hostname.optional(),
  /** Extra group ids of the process, beside the user's groups in the rootfs (CRI supplemental_groups). */
  additionalGids: z.array(z.number().int().min(0).max(4294967294)).optional(),
  mounts: z.array(BindMount).optional(),
  resources: Resources.optional(),
  readonlyRootfs: z.boolean().optional(),
  noNewPrivileges: z.boolean().optional(),
  network: NetworkMode.optional(),
  /** Ports published from the node (network `bridge` only). */
  ports: z.array(PublishedPort).optional(),
  dns: DnsConfig.optional(),
  /** Capabilities to add to / drop from the default set ("NET_ADMIN" or "CAP_NET_ADMIN", or "ALL"). */
  capAdd: z.array(z.string()).optional(),
  capDrop: z.array(z.string()).optional(),
  /**
   * oom_score_adj. A value below the node's shim's own score needs CAP_SYS_RESOURCE: a shim without
   * it raises the value to its own score (as containerd's CRI with restrict_oom_score_adj) and logs
   * a warning, rather than fail the task's create.
   */
  oomScoreAdj: z.number().int().min(-1000).max(1000).optional(),
  /**
   * Run with the resource limits of the node's runtime (the shim's), as containerd's CRI runs its
   * containers, instead of berth's default RLIMIT_NOFILE of 1024 (as `ctr run` and nerdctl).
   */
  inheritRlimits: z.boolean().optional(),
  sysctls: z.record(z.string(), z.string()).optional(),
  /** Allocate a terminal for the task's process. */
  tty: z.boolean().optional(),
  /** Keep the process's stdin open (attach). */
  stdin: z.boolean().optional(),
  labels: z.record(z.string(), z.string()).optional(),
  annotations: z.record(z.string(), z.string()).optional(),
  /** Where the CRI log goes; default the shim's (logs/<ns>/<id>.log under the node's state root). */
  logPath: z.string().startsWith('/').optional(),
  /** Signal `stop` sends first; default the image's StopSignal, else SIGTERM. */
  stopSignal: z
    .string()
    .refine(isSignal, 'not a Linux signal (a name such as SIGTERM, or a number 1-64)')
    .optional(),
  /** cgroups path for linux.cgroupsPath; default /berth/<ns>/<id>. */
  cgroupsPath: z.string().optional(),
  /** pid/ipc/uts namespaces (network is `network`); default private. */
  namespaces: z
    .object({ pid: NamespaceMode.optional(), ipc: NamespaceMode.optional(), uts: NamespaceMode.optional() })
    .optional(),
  /**
   * The container's /dev/shm: `private` (default), a tmpfs of its own, made inside its mount
   * namespace and gone with it; `shareable`, the same tmpfs made by its node's shim in the
   * container's files directory (containers/<ns>/<id>/shm, see docs/layout.md) and bound in, so
   * that other containers on the node can bind it too (a CRI pod's containers share their pause
   * container's, as containerd's CRI does). Each task mounts a fresh one, unmounted when the task
   * exits (containers still running keep their binds) or the container is removed. A bind mount on
   * /dev/shm (or /dev) in `mounts` replaces either.
   */
  shm: z.enum(['private', 'shareable']).optional(),
  /** Replace the default masked / read-only paths (CRI passes its own; [] removes them). */
  maskedPaths: z.array(z.string()).optional(),
  readonlyPaths: z.array(z.string()).optional(),
  /**
   * All capabilities, every device allowed, no masked or read-only paths, /sys writable, no seccomp
   * and no AppArmor profile unless one is named.
   */
  privileged: z.boolean().optional(),
  /** Host devices given to the container by path (its node resolves and allows them). */
  devices: z.array(DeviceMapping).optional(),
  /** The seccomp filter; default berth's default profile (ignored when privileged: none). */
  seccomp: SeccompRequest.optional(),
  /**
   * The AppArmor profile; default berth's default profile where the node's kernel has AppArmor
   * (none when privileged, as Docker and containerd do; a profile asked for by name still applies).
   * Resolved by the node's shim at each task create.
   */
  apparmor: AppArmorRequest.optional(),
  /**
   * The node's record of `image` as the caller already holds it from the node's image-service
   * (the CRI gateway's image view): used instead of asking that image-service again. Its name
   * must be `image`; it is not kept in the container's record.
   */
  imageRecord: ImageRecord.optional(),
  /**
   * Prepare the rootfs snapshot right after the reply instead of before it, for a caller whose
   * start follows at once (the CRI gateway's CreateContainer, then StartContainer): the record is
   * stored and answered without `rootfs`, and the snapshot is prepared under the container's lock
   * straight after, so a start or removal (which take that lock) waits for it. Until its mounts
   * are stored, the record claims its image's chain (`claimed-chains`, a root of the node's
   * snapshot GC), so an image removed meanwhile keeps the chain the prepare needs. A prepare that
   * fails then leaves the record as it is: the first task create prepares the snapshot again and
   * fails with its error. Ignored with network `bridge`, whose network is made before the reply.
   * Not kept in the container's record.
   */
  prepareAfterReply: z.boolean().optional(),
});
export type CreateContainerRequest = z.infer<typeof CreateContainerRequest>;

/** A container's stdio: a terminal or pipes, stdin kept open, and its CRI log when configured. */
export const ContainerIo = z.object({
  terminal: z.boolean(),
  stdin: z.boolean(),
  logPath: z.string().optional(),
});
export type ContainerIo = z.infer<typeof ContainerIo>;

/** A container: metadata only (as containerd's containers service); the process is its task. */
export const Container = z.object({
  id: z.string().regex(CONTAINER_ID_PATTERN),
  namespace: z.string(),
  name: z.string(),
  image: z.object({ name: z.string(), digest: z.string(), chainId: z.string().optional() }),
  node: z.string(),
  /** The OCI runtime spec (config.json without root.path, which the shim sets). */
  spec: z.record(z.string(), z.unknown()),
  /** The active snapshot holding the rootfs, on the node's snapshot-service. */
  snapshotKey: z.string(),
  /**
   * The mounts `prepare` returned for that snapshot, kept so task create needs no `mounts` call.
   * They stay right while the record exists: an active snapshot's mounts are its own directory
   * and its parents', fixed when it is made, and only the container's removal removes it.
   * Records made before this field ask the snapshot-service.
   */
  rootfs: z.array(Mount).optional(),
  labels: z.record(z.string(), z.string()),
  runtime: z.object({ name: z.string() }),
  io: ContainerIo,
  stopSignal: z.string(),
  /** The request the container was made from (for inspect). */
  config: CreateContainerRequest,
  /** The CNI network its node's shim set up (network `bridge`): namespace and addresses. */
  network: z.object({ netnsPath: z.string(), ips: z.array(z.string()) }).optional(),
  createdAt: z.string(),
  updatedAt: z.string(),
});
export type Container = z.infer<typeof Container>;

/** The task of a container as the task-service records it (status mirrors the shim's). */
export const Task = z.object({
  id: z.string(),
  namespace: z.string(),
  node: z.string(),
  status: z.enum([
    TaskStatus.created,
    TaskStatus.running,
    TaskStatus.paused,
    TaskStatus.stopped,
    TaskStatus.unknown,
  ]),
  pid: z.number().int(),
  exitCode: z.number().int().optional(),
  exitedAt: z.string().optional(),
  /** "OOMKilled", "Completed" or "Error" once stopped (as containerd's CRI). */
  reason: z.string().optional(),
  logPath: z.string().optional(),
  /** The monitor's attach socket and control fifo (same host only; see @berth/shim/attach). */
  attachPath: z.string().optional(),
  ctlPath: z.string().optional(),
  createdAt: z.string(),
  startedAt: z.string().optional(),
});
export type Task = z.infer<typeof Task>;

/**
 * Reply of `create`: the task, and what its node resolved for its process (the user's ids and
 * groups, the capability set), now in the container's stored spec: a caller keeping the
 * container's record applies it there (@berth/kit withResolvedProcess) instead of reading it again.
 */
export const CreateTaskReply = Task.extend({ resolved: ShimResolvedProcess.optional() });
export type CreateTaskReply = z.infer<typeof CreateTaskReply>;

/**
 * Reply of `run-container`: the container made, as far as a caller following its output needs
 * it (`get-container` has the whole record), and its task, started. Small on purpose: a CLI
 * builds and checks this reply's schema while the container starts, on the same cores.
 */
export const RunContainerReply = z.object({
  container: z.object({
    id: z.string().regex(CONTAINER_ID_PATTERN),
    namespace: z.string(),
    name: z.string(),
    node: z.string(),
    io: ContainerIo,
  }),
  task: Task,
});
export type RunContainerReply = z.infer<typeof RunContainerReply>;

/** Container status as `ps` shows it: its task's, or `created` when it has none. */
export const ContainerStatus = {
  created: 'created',
  running: 'running',
  paused: 'paused',
  stopped: 'stopped',
  unknown: 'unknown',
} as const;
export type ContainerStatus = (typeof ContainerStatus)[keyof typeof ContainerStatus];

/** A ContainerStatus in a schema: one list for every field holding one. */
const containerStatus = z.enum([
  ContainerStatus.created,
  ContainerStatus.running,
  ContainerStatus.paused,
  ContainerStatus.stopped,
  ContainerStatus.unknown,
]);

/** A container with its task, as get/list return it. */
export const ContainerInfo = z.object({
  container: Container,
  task: Task.optional(),
  status: containerStatus,
  /**
   * Parts of the record left out of this reply (`spec` then `{}`, `config` then only its image):
   * set only for a record larger than CONTAINER_RECORD_MAX_BYTES, made before create enforced
   * the limit, which no reply could carry whole. Such a container can still be stopped and removed.
   */
  omitted: z.array(z.enum(['spec', 'config'])).optional(),
});
export type ContainerInfo = z.infer<typeof ContainerInfo>;

/** Names a container: full id, unique id prefix, or name. */
export const ContainerRef = z.object({ id: z.string().min(1) });
export type ContainerRef = z.infer<typeof ContainerRef>;

/**
 * Label that asks the task-service to remove a container (and its snapshot) once its task exits:
 * `berth run -d --rm`. An attached `berth run --rm` removes its container itself.
 */
export const AUTO_REMOVE_LABEL = 'berth.auto-remove';

/**
 * Request of `list-containers`: every filter must match; filters apply before paging. Pages are
 * newest first (as `ps`), each bounded by PAGE_MAX_ITEMS and PAGE_MAX_BYTES.
 */
export const ListContainersRequest = PageRequest.extend({
  /** label=value must match exactly; a label with value "" only has to exist. */
  labels: z.record(z.string(), z.string()).optional(),
  status: z.array(containerStatus).optional(),
  name: z.string().optional(),
  /** Only containers placed on this node. */
  node: z.string().optional(),
  /** Only containers whose image name or digest is one of these (the image-service's in-use check). */
  images: z.array(z.string()).optional(),
});
export type ListContainersRequest = z.infer<typeof ListContainersRequest>;

/** Request of `claimed-chains`: the node whose containers' claims are asked for. */
export const ClaimedChainsRequest = z.object({ node: z.string().regex(NODE_ID_PATTERN, 'invalid node id') });
export type ClaimedChainsRequest = z.infer<typeof ClaimedChainsRequest>;

/**
 * Reply of `claimed-chains`: the image chains (top chainIDs) that containers on the node, in every
 * namespace, were created on without their rootfs snapshot (a create answered before its prepare,
 * CreateContainerRequest.prepareAfterReply), until the snapshot is prepared and stored in the
 * record, or the container is removed. The snapshot-service's GC keeps them and everything below:
 * the image may be removed meanwhile, and the container's prepare and start still need the chain.
 */
export const ClaimedChainsReply = z.object({ chainIds: z.array(z.string()) });
export type ClaimedChainsReply = z.infer<typeof ClaimedChainsReply>;

/** Reply of `list-containers`: one page; `nextCursor` while more containers match. */
export const ListContainersReply = PageReply.extend({ containers: z.array(ContainerInfo) });
export type ListContainersReply = z.infer<typeof ListContainersReply>;

/**
 * A container as a listing shows it (`berth ps`, docker's summary beside inspect's record): its
 * names, image, command, node, age and status, without the spec and the request it was made
 * from. A CLI builds the schema of every reply it reads: a listing of whole records
 * (ListContainersReply, with the create request's seccomp profile and image record) cost each
 * `berth ps` ~5 ms of CPU to build, this one a fraction of it.
 */
export const ContainerSummary = z.object({
  container: z.object({
    id: z.string().regex(CONTAINER_ID_PATTERN),
    namespace: z.string(),
    name: z.string(),
    image: z.object({ name: z.string(), digest: z.string() }),
    node: z.string(),
    /** The process's arguments (the spec's `process.args`; empty when the record omitted its spec). */
    command: z.array(z.string()),
    labels: z.record(z.string(), z.string()),
    createdAt: z.string(),
  }),
  task: Task.optional(),
  status: containerStatus,
});
export type ContainerSummary = z.infer<typeof ContainerSummary>;

/**
 * A container as `list-container-summaries` returns it: the listing's columns of its record (a
 * client of a task-service without that operation summarizes `list-containers`'s records so).
 */
export function summarizeContainer(i: ContainerInfo): ContainerSummary {
  const { container: c } = i;
  const args = (c.spec.process as { args?: unknown } | undefined)?.args;
  return {
    container: {
      id: c.id,
      namespace: c.namespace,
      name: c.name,
      image: { name: c.image.name, digest: c.image.digest },
      node: c.node,
      command: Array.isArray(args) ? args.filter((a): a is string => typeof a === 'string') : [],
      labels: c.labels,
      createdAt: c.createdAt,
    },
    ...(i.task ? { task: i.task } : {}),
    status: i.status,
  };
}

/** Reply of `list-container-summaries`: one page, as list-containers pages. */
export const ListContainerSummariesReply = PageReply.extend({ containers: z.array(ContainerSummary) });
export type ListContainerSummariesReply = z.infer<typeof ListContainerSummariesReply>;

/** Request of `update-container`: labels are merged ("" removes one); resources update the spec (and a live task). */
export const UpdateContainerRequest = ContainerRef.extend({
  labels: z.record(z.string(), z.string()).optional(),
  resources: Resources.optional(),
});
export type UpdateContainerRequest = z.infer<typeof UpdateContainerRequest>;

/** Request of `delete-container`: with force a live task is killed and deleted first. */
export const DeleteContainerRequest = ContainerRef.extend({
  force: z.boolean().optional(),
  /**
   * Reply once the record is gone, and free what the container holds on its node (its stopped
   * task, files, network, snapshot) after, as containerd's CRI leaves that to its garbage
   * collector; a freeing that a crash interrupted is finished by the task-service's reconcile.
   */
  background: z.boolean().optional(),
});
export type DeleteContainerRequest = z.infer<typeof DeleteContainerRequest>;

/** Request of task operations that take a process: the task (execId absent) or one exec. */
/**
 * Request of `create`: the container's task; with `start` it is started in the same call (what a
 * create followed by a start does, one round trip less), and a start that fails leaves no task.
 */
export const CreateTaskRequest = ContainerRef.extend({
  start: z.boolean().optional(),
  /**
   * A pod network of the container's node (its id at the shim's network ops) whose namespace the
   * spec joins: the shim pins it first when no one has yet (RunPodSandbox's pause container, made
   * while `network-setup` runs, without a `network-netns` call before). See ShimCreateRequest.
   */
  netnsPod: z.string().min(1).max(128).optional(),
});
export type CreateTaskRequest = z.infer<typeof CreateTaskRequest>;

export const TaskProcessRef = ContainerRef.extend({ execId: z.string().min(1).optional() });
export type TaskProcessRef = z.infer<typeof TaskProcessRef>;

/** Request of `kill`. */
export const KillRequest = TaskProcessRef.extend({
  signal: Signal.optional(),
  all: z.boolean().optional(),
});
export type KillRequest = z.infer<typeof KillRequest>;

/** Request of `wait`: resolves when the process exits, or DEADLINE_EXCEEDED after timeoutMs. */
export const WaitRequest = TaskProcessRef.extend({ timeoutMs: z.number().int().positive().optional() });
export type WaitRequest = z.infer<typeof WaitRequest>;

/** An exit status, as wait/delete return it. */
export const ExitStatus = z.object({
  exitCode: z.number().int(),
  exitedAt: z.string(),
  reason: z.string().optional(),
});
export type ExitStatus = z.infer<typeof ExitStatus>;

/** Request of `exec`: a new process in the running task; start it with `start` + execId. */
export const ExecRequest = ContainerRef.extend({
  execId: z.string().regex(/^[a-zA-Z0-9_.-]{1,64}$/, 'invalid exec id'),
  args: z.array(z.string()).min(1, 'exec needs a command'),
  env: z.array(z.string()).optional(),
  cwd: z.string().optional(),
  user: z.string().optional(),
  tty: z.boolean().optional(),
  stdin: z.boolean().optional(),
});
export type ExecRequest = z.infer<typeof ExecRequest>;

/** Reply of `exec`/`start`/`state` for a process. */
export const ProcessState = Task.pick({
  id: true,
  pid: true,
  exitCode: true,
  exitedAt: true,
  reason: true,
  logPath: true,
  attachPath: true,
  ctlPath: true,
  // Set by a task's `start`: what the task record now holds, so a caller keeping a copy needs no re-read.
  startedAt: true,
}).extend({ execId: z.string().optional(), status: z.string() });
export type ProcessState = z.infer<typeof ProcessState>;

/** Request of `update` (a live task's resources). */
export const UpdateTaskRequest = ContainerRef.extend({ resources: Resources });
export type UpdateTaskRequest = z.infer<typeof UpdateTaskRequest>;

/** The task-service: containers and tasks of every node (cluster-wide, any replica answers). */
export const TaskApi = defineService({
  name: Service.task,
  scope: Scope.cluster,
  ops: {
    'create-container': op({
      input: CreateContainerRequest,
      output: Container,
      timeoutMs: 60_000,
      description: 'create a container: resolve the image, prepare its rootfs, generate its OCI spec',
    }),
    'run-container': op({
      input: CreateContainerRequest,
      output: RunContainerReply,
      timeoutMs: 60_000,
      description:
        'create-container, then its task created and started, in one call (berth run without a session); a failure removes the container again',
    }),
    'get-container': op({
      input: ContainerRef,
      output: ContainerInfo,
      timeoutMs: 5_000,
      description: 'one container and its task',
    }),
    'list-containers': op({
      input: ListContainersRequest,
      output: ListContainersReply,
      timeoutMs: 10_000,
      description: 'one page of the containers matching filters, newest first',
    }),
    'list-container-summaries': op({
      input: ListContainersRequest,
      output: ListContainerSummariesReply,
      timeoutMs: 10_000,
      description: 'list-containers with each container summarized (no spec, no create request)',
    }),
    'update-container': op({
      input: UpdateContainerRequest,
      output: Container,
      timeoutMs: 15_000,
      description: "merge labels, update resources (and a live task's)",
    }),
    'delete-container': op({
      input: DeleteContainerRequest,
      output: Empty,
      timeoutMs: 60_000,
      description: 'remove a container and its snapshot (force: kill its task first)',
    }),
    'claimed-chains': op({
      input: ClaimedChainsRequest,
      output: ClaimedChainsReply,
      timeoutMs: 10_000,
      description:
        "image chains a node's containers were created on before their rootfs (snapshot GC's roots)",
    }),
    create: op({
      input: CreateTaskRequest,
      output: CreateTaskReply,
      timeoutMs: 60_000,
      description: "create a container's task on its node (and start it, with start)",
    }),
    start: op({
      input: TaskProcessRef,
      output: ProcessState,
      timeoutMs: 30_000,
      description: 'start a task or exec process',
    }),
    kill: op({
      input: KillRequest,
      output: Empty,
      timeoutMs: 10_000,
      description: 'signal a task or exec process',
    }),
    wait: op({
      input: WaitRequest,
      output: ExitStatus,
      timeoutMs: 24 * 3600_000,
      description: 'the exit of a task or exec process, once it happened',
    }),
    delete: op({
      input: TaskProcessRef,
      output: ExitStatus,
      timeoutMs: 30_000,
      description: 'remove a stopped task or exec process',
    }),
    exec: op({
      input: ExecRequest,
      output: ProcessState,
      timeoutMs: 30_000,
      description: 'prepare a process in a running task',
    }),
    pause: op({ input: ContainerRef, output: Empty, timeoutMs: 10_000, description: 'freeze a task' }),
    resume: op({ input: ContainerRef, output: Empty, timeoutMs: 10_000, description: 'thaw a task' }),
    pids: op({
      input: ContainerRef,
      output: ShimPidsReply,
      timeoutMs: 10_000,
      description: 'host pids of a task',
    }),
    stats: op({
      input: ContainerRef,
      output: ShimStats,
      timeoutMs: 10_000,
      description: 'cgroup sample of a task: cpu, memory, pids',
    }),
    update: op({
      input: UpdateTaskRequest,
      output: Empty,
      timeoutMs: 15_000,
      description: "a live task's resources",
    }),
    'close-stdin': op({
      input: TaskProcessRef,
      output: Empty,
      timeoutMs: 10_000,
      description: "close a process's stdin",
    }),
    state: op({
      input: TaskProcessRef,
      output: ProcessState,
      timeoutMs: 10_000,
      description: 'state of a task or exec process',
    }),
  },
});

/** containerd's CRI reason for a main process's exit: the monitor's ("OOMKilled"), else by exit code. */
export function exitReason(exitCode: number, reason?: string): string {
  if (reason) return reason;
  return exitCode === 0 ? 'Completed' : 'Error';
}

/** Event topics the task-service publishes (tasks.exit and tasks.oom come from the shim's exit path). */
export const TaskTopic = {
  containerCreate: 'containers.create',
  containerUpdate: 'containers.update',
  containerDelete: 'containers.delete',
  taskCreate: 'tasks.create',
  taskStart: 'tasks.start',
  taskExit: 'tasks.exit',
  taskDelete: 'tasks.delete',
  taskPaused: 'tasks.paused',
  taskResumed: 'tasks.resumed',
  taskExecAdded: 'tasks.exec-added',
  taskExecStarted: 'tasks.exec-started',
  taskOom: 'tasks.oom',
} as const;
export type TaskTopic = (typeof TaskTopic)[keyof typeof TaskTopic];
