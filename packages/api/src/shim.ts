// Contracts of the shim agent (NATS: berth.<node>.shim.v1.<op>). Owned by the shim work; the
// task-service relies on these: extend, do not break. Every request names namespace and id.

import { AppArmorRequest } from './apparmor.js';
import { ShimCapabilities, ShimResolvedProcess } from './capabilities.js';
import { defineService, Empty, op, Scope } from './contract.js';
import { DeviceMapping } from './devices.js';
import * as z from './lazy-zod.js';
import { PageReply, PageRequest } from './paging.js';
import { SeccompRequest } from './seccomp.js';
import { Mount } from './snapshot.js';
import { StreamEnd } from './stream.js';
import { NAMESPACE_PATTERN, NAMESPACE_RULE, Service } from './subjects.js';

/** A namespace name (see NAMESPACE_PATTERN): never a path. */
export const Namespace = z.string().regex(NAMESPACE_PATTERN, NAMESPACE_RULE);

const TaskRef = z.object({ namespace: Namespace, id: z.string().min(1) });

const SIGNAL_NAMES = new Set(
  'HUP INT QUIT ILL TRAP ABRT IOT BUS FPE KILL USR1 SEGV USR2 PIPE ALRM TERM STKFLT CHLD CONT STOP TSTP TTIN TTOU URG XCPU XFSZ VTALRM PROF WINCH IO POLL PWR SYS'.split(
    ' ',
  ),
);

/** True for a Linux signal as docker takes it: a name (`TERM`, `SIGTERM`, `RTMIN+3`) or 1-64. */
export function isSignal(s: string | number): boolean {
  if (typeof s === 'number' || /^\d+$/.test(s)) return Number(s) >= 1 && Number(s) <= 64;
  const name = s.toUpperCase().replace(/^SIG/, '');
  const rt = /^RTM(IN|AX)([+-](\d{1,2}))?$/.exec(name);
  if (rt) return !rt[3] || Number(rt[3]) <= 30;
  return SIGNAL_NAMES.has(name);
}

/** A signal by name or number, refused at the edge when Linux has no such signal. */
export const Signal = z
  .union([z.number().int(), z.string().min(1)])
  .refine(isSignal, { message: 'not a Linux signal (a name such as SIGTERM, or a number 1-64)' });

/** Task (and exec process) states, as containerd's shim reports them. */
export const TaskStatus = {
  created: 'created',
  running: 'running',
  paused: 'paused',
  stopped: 'stopped',
  unknown: 'unknown',
} as const;
export type TaskStatus = (typeof TaskStatus)[keyof typeof TaskStatus];

/** A host name as RFC 1123 allows it (labels of letters, digits and inner dashes, 253 chars at most). */
export const Hostname = z
  .string()
  .regex(
    /^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/,
    'hostname must be an RFC 1123 host name (letters, digits, inner dashes, dot-separated labels)',
  );

/**
 * Prefix of a spec mount source that names a file the shim writes on its own node before `runc
 * create` (`berth-file:hosts`, `berth-file:resolv.conf`, `berth-file:hostname`): the container's
 * node, not the caller's, owns them. Such a source needs `files` in the create request.
 */
export const SHIM_FILE_SOURCE = 'berth-file:';

/**
 * Spec mount source of a container's shareable /dev/shm (CreateContainerRequest `shm`): a `tmpfs`
 * mount with this source is made by the shim at task create, with the mount's options, in the
 * container's directory on its node (containers/<ns>/<id>/shm) unless already mounted there, and
 * becomes a bind mount of it; the task's exit and `remove-files` unmount it. It needs no `files`
 * in the request.
 */
export const SHIM_SHM_SOURCE = `${SHIM_FILE_SOURCE}shm`;

/** The files the shim can generate for a container, by their marker name. */
export const ShimFileName = { hosts: 'hosts', resolvConf: 'resolv.conf', hostname: 'hostname' } as const;
export type ShimFileName = (typeof ShimFileName)[keyof typeof ShimFileName];

/**
 * What the shim needs to write a container's /etc files on its node (into the state root's
 * containers/<ns>/<id>/, kept across the container's runs). Facts of the node (its /etc/hosts,
 * /etc/resolv.conf, host name) are read there, never on the caller's machine.
 */
export const ShimContainerFiles = z.object({
  /** The container's host name; absent means the node's own (a container in the host network). */
  hostname: Hostname.optional(),
  /** `host`: /etc/hosts is the node's and loopback nameservers are kept; `private`: generated. */
  network: z.enum(['private', 'host']),
  /** Explicit resolv.conf content (--dns); absent means the node's /etc/resolv.conf. */
  resolvConf: z.string().optional(),
});
export type ShimContainerFiles = z.infer<typeof ShimContainerFiles>;

/** A port published from the host into a pod (CNI portmap `portMappings`). */
export const ShimPortMapping = z.object({
  hostPort: z.number().int().min(1).max(65535),
  containerPort: z.number().int().min(1).max(65535),
  protocol: z.enum(['tcp', 'udp', 'sctp']).default('tcp'),
  /** Host address to bind; absent for every address. */
  hostIP: z.string().optional(),
});
export type ShimPortMapping = z.infer<typeof ShimPortMapping>;

/** Request of `create`: write the bundle, mount the rootfs, start the monitor and `runc create`. */
/**
 * What a create's start keeps free of its caller's timeout (ms): the start itself, the removal of
 * a task not started, the record and the reply. The shim starts a task only within its create's
 * timeout less this, and a task-service passes on its own request's timeout less this.
 */
export const START_MARGIN_MS = 5_000;

export const ShimCreateRequest = TaskRef.extend({
  /** The full OCI runtime spec (config.json); root.path is set by the shim to the bundle's rootfs. */
  spec: z.record(z.string(), z.unknown()),
  rootfs: z.array(Mount),
  terminal: z.boolean().default(false),
  stdin: z.boolean().default(false),
  /**
   * Close the process's stdin when the first attached client hangs up (docker's StdinOnce, CRI's
   * stdin_once); default true. False keeps stdin open across attach sessions (`run -dit` then
   * `attach`), and then close-stdin cannot close it.
   */
  stdinOnce: z.boolean().optional(),
  /**
   * Where the CRI-format log goes; default under the state root: logs/<ns>/<id>.log (removed with
   * the task), or containers/<ns>/<id>/container.log when `files` is given (kept across runs).
   */
  logPath: z.string().optional(),
  /** The container's /etc files to write on this node; spec mounts name them by SHIM_FILE_SOURCE. */
  files: ShimContainerFiles.optional(),
  /**
   * The seccomp filter, resolved on this node (its architecture and kernel, a localhost profile's
   * file) for the spec's bounding capabilities into linux.seccomp; `unconfined` removes it.
   * Absent: the spec's own linux.seccomp, if any, is used as given.
   */
  seccomp: SeccompRequest.optional(),
  /**
   * The AppArmor profile, resolved on this node into process.apparmorProfile: `default` loads
   * berth's default profile when needed (none where the kernel has no AppArmor), `localhost` must
   * name a profile loaded here (FAILED_PRECONDITION otherwise), `unconfined` removes it. Absent:
   * the spec's own process.apparmorProfile, if any, as given.
   */
  apparmor: AppArmorRequest.optional(),
  /**
   * user[:group] (names or numeric ids) resolved here against the mounted rootfs's /etc/passwd
   * and /etc/group into process.user: uid, gid, and the user's groups added to the spec's
   * additionalGids; HOME is set from passwd when the env has none. Absent: process.user as given.
   */
  user: z.string().optional(),
  /**
   * The capability set, resolved here from this node's bounding set into process.capabilities
   * (bounding, effective, permitted), before seccomp. Absent: the spec's own, as given.
   */
  capabilities: ShimCapabilities.optional(),
  /**
   * Add every char and block device node under this node's /dev (type, numbers, mode, owner; as
   * containerd's WithHostDevices, skipping pts, shm, fd, mqueue and console) to linux.devices,
   * after the spec's own: a privileged container's. Walked at each create: devices come and go.
   */
  hostDevices: z.boolean().optional(),
  /**
   * Host devices by path (CRI devices): each node (or each under a directory) is added to
   * linux.devices at its container path with this node's type and numbers, and allowed in the
   * device cgroup with its permissions. A path that is no device here is FAILED_PRECONDITION.
   */
  devices: z.array(DeviceMapping).optional(),
  /**
   * A pod network of this node (its id at the network ops) whose pinned namespace the spec's
   * network namespace must be: pinned first, as `network-netns` would, unless a `network-setup`
   * under way or before has; a spec naming another path is refused (INVALID_ARGUMENT).
   */
  netnsPod: z.string().min(1).max(128).optional(),
  /**
   * Start the task in this call once it is created, as a `start` right after would (recorded
   * `created`, then `running`): the reply is the started task. A start that fails removes the
   * task again (as a failed create) and the call fails with the start's error. A task not ready
   * to start 5 s before this operation's timeout is never started: the call fails
   * DEADLINE_EXCEEDED and the task is removed. A shim without this field replies `created`, and
   * the caller starts it.
   */
  start: z.boolean().optional(),
  /**
   * Instead of `start`, with `netnsPod`: attach that pod (its CNI ADD, as `network-setup` with
   * these port mappings) while the task is made, and start the task once both are done; the
   * reply's `network` has the pod's addresses. The ADD runs beside `runc create` instead of
   * before it. An ADD that fails fails the create with its error (the task is removed; the pod's
   * namespace stays for the caller's teardown), and so does one not done by `start`'s deadline.
   * A shim without this field leaves the task `created` and the pod unattached (no `network` in
   * the reply): the caller attaches it and starts the task.
   */
  startAttached: z.object({ portMappings: z.array(ShimPortMapping).default([]) }).optional(),
  /**
   * With `start` or `startAttached`: the caller's own time left (ms from this request's arrival)
   * to start the task; the shim starts it only within the shorter of this and its own deadline.
   * A caller that is itself answering a request with a deadline (the task-service's run-container)
   * passes what is left of it, so no task starts after the user was told the call failed.
   */
  startWithinMs: z.number().int().nonnegative().optional(),
});
export type ShimCreateRequest = z.infer<typeof ShimCreateRequest>;

export const ShimTaskRef = TaskRef.extend({ execId: z.string().optional() });
export type ShimTaskRef = z.infer<typeof ShimTaskRef>;

export const ShimKillRequest = ShimTaskRef.extend({
  signal: Signal.default('SIGTERM'),
  all: z.boolean().default(false),
});
export type ShimKillRequest = z.infer<typeof ShimKillRequest>;

/** One address of a pod in its network namespace. */
export const ShimPodAddress = z.object({
  address: z.string(),
  version: z.union([z.literal(4), z.literal(6)]),
  gateway: z.string().optional(),
});
export type ShimPodAddress = z.infer<typeof ShimPodAddress>;

/**
 * A pod's addresses without their prefix lengths, IPv4 first (the kubelet takes the first as the
 * pod's primary IP; a container record keeps them in the same order).
 */
export function podAddresses(ips: readonly Pick<ShimPodAddress, 'address' | 'version'>[]): string[] {
  return [...ips]
    .sort((a, b) => a.version - b.version)
    .map((i) => i.address.split('/')[0] ?? '')
    .filter((a) => a !== '');
}

/** State of a task or exec process. exitCode/exitedAt are set once it stopped. */
export const ShimState = z.object({
  namespace: z.string(),
  id: z.string(),
  execId: z.string().optional(),
  status: z.enum(['created', 'running', 'paused', 'stopped', 'unknown']),
  pid: z.number().int(),
  exitCode: z.number().int().optional(),
  exitedAt: z.string().optional(),
  /** "OOMKilled" when the kernel OOM killer ended it. */
  reason: z.string().optional(),
  logPath: z.string().optional(),
  /** The bundle directory (config.json, rootfs) of the task, or the exec's directory. */
  bundle: z.string().optional(),
  terminal: z.boolean().optional(),
  stdin: z.boolean().optional(),
  /** pid of the per-process monitor (conmon) holding stdio and recording the exit. */
  monitorPid: z.number().int().optional(),
  /**
   * The monitor's attach socket (AF_UNIX SOCK_SEQPACKET) while it runs: output and stdin of the
   * process. Use `attach` from @berth/shim on the same host; absent once the process stopped.
   */
  attachPath: z.string().optional(),
  /** The monitor's control fifo: `2 0 0\n` reopens the log; the terminal size goes to `winsz` beside it (see resizeTerminal). */
  ctlPath: z.string().optional(),
  createdAt: z.string().optional(),
  startedAt: z.string().optional(),
  /** In a create reply: what this node resolved for the process (user, capabilities). */
  resolved: ShimResolvedProcess.optional(),
  /** In the reply of a create with `startAttached`: the pod's addresses once attached. */
  network: z.object({ ips: z.array(ShimPodAddress) }).optional(),
});
export type ShimState = z.infer<typeof ShimState>;

/** Reply of `kill`: delivered is false when the process had already exited (not an error: rm -f). */
export const ShimKillReply = z.object({ delivered: z.boolean() });
export type ShimKillReply = z.infer<typeof ShimKillReply>;

/** Reply of `wait`: the persisted exit. */
export const ShimWaitReply = z.object({
  exitCode: z.number().int(),
  exitedAt: z.string(),
  reason: z.string().optional(),
});
export type ShimWaitReply = z.infer<typeof ShimWaitReply>;

/** Reply of `pids`: the host pids of the task's processes. */
export const ShimPidsReply = z.object({ pids: z.array(z.number().int()) });
export type ShimPidsReply = z.infer<typeof ShimPidsReply>;

/** One sample of a task's cgroup (v1 or v2, whichever runc uses on the host). */
export const ShimStats = z.object({
  cgroupVersion: z.union([z.literal(1), z.literal(2)]),
  timestamp: z.string(),
  cpu: z.object({
    /** Total CPU time in ns. */
    usageNs: z.number(),
    userNs: z.number(),
    systemNs: z.number(),
    throttledPeriods: z.number().optional(),
    throttledNs: z.number().optional(),
  }),
  memory: z.object({
    usageBytes: z.number(),
    /** Absent when unlimited. */
    limitBytes: z.number().optional(),
    /** Usage minus inactive file cache (what `docker stats` shows). */
    workingSetBytes: z.number(),
    rssBytes: z.number(),
    cacheBytes: z.number(),
    maxUsageBytes: z.number().optional(),
    oomKills: z.number().optional(),
    /** Page faults of the cgroup's processes (memory.stat pgfault); absent from older shims. */
    pageFaults: z.number().optional(),
    /** Major page faults (pgmajfault). */
    majorPageFaults: z.number().optional(),
  }),
  pids: z.object({ current: z.number(), limit: z.number().optional() }),
});
export type ShimStats = z.infer<typeof ShimStats>;

/** Request of `update`: new OCI linux.resources for a live task (runc update). */
export const ShimUpdateRequest = ShimTaskRef.extend({ resources: z.record(z.string(), z.unknown()) });
export type ShimUpdateRequest = z.infer<typeof ShimUpdateRequest>;

/** Request of `resize`: the terminal size of a task or exec with a TTY. */
export const ShimResizeRequest = ShimTaskRef.extend({
  rows: z.number().int().min(1).max(1000),
  cols: z.number().int().min(1).max(1000),
});
export type ShimResizeRequest = z.infer<typeof ShimResizeRequest>;

/** Request of `list`: the tasks the node's shim supervises, in one namespace or all; pages by namespace and id. */
export const ShimListRequest = PageRequest.extend({ namespace: Namespace.optional() });
export type ShimListRequest = z.infer<typeof ShimListRequest>;
/** Reply of `list`: one page; `nextCursor` while more tasks remain. */
export const ShimListReply = PageReply.extend({ tasks: z.array(ShimState) });
export type ShimListReply = z.infer<typeof ShimListReply>;

/**
 * Most bytes of each stream an `exec-output` reply carries: both, in base64, fit NATS's default
 * max_payload (1 MiB) with room to spare. Longer output is read with `logs`, which streams.
 */
export const SHIM_EXEC_OUTPUT_MAX_BYTES = 256 * 1024;

/**
 * Reply of `exec-output`: what an exec process wrote (from its CRI log) as bytes, in base64 (a
 * process's output need not be text), each stream cut at SHIM_EXEC_OUTPUT_MAX_BYTES.
 */
export const ShimExecOutput = z.object({
  stdoutBase64: z.base64(),
  stderrBase64: z.base64(),
  /** True when a stream was longer than the cap and only its start is returned. */
  truncated: z.boolean(),
});
export type ShimExecOutput = z.infer<typeof ShimExecOutput>;

/** Exit of a task or exec, as persisted and announced (event topic `tasks.exit`). */
export const TaskExit = z.object({
  namespace: z.string(),
  id: z.string(),
  execId: z.string().optional(),
  pid: z.number().int(),
  exitCode: z.number().int(),
  exitedAt: z.string(),
  reason: z.string().optional(),
  node: z.string(),
});
export type TaskExit = z.infer<typeof TaskExit>;

/** Request of `exec`: a new process (OCI process spec) in a running task. */
export const ShimExecRequest = TaskRef.extend({
  execId: z.string().min(1),
  process: z.record(z.string(), z.unknown()),
  terminal: z.boolean().default(false),
  stdin: z.boolean().default(false),
  /** user[:group] resolved here against the task's rootfs into process.user (as in create). */
  user: z.string().optional(),
});
export type ShimExecRequest = z.infer<typeof ShimExecRequest>;

/**
 * Request of `logs`: the CRI-format log of a task or exec, streamed over NATS (see stream.ts)
 * from the node that has the file; data frames on channel `log` hold whole log lines.
 */
export const ShimLogsRequest = ShimTaskRef.extend({
  /** Keep sending new lines until the process's exit is persisted (`logs -f`). */
  follow: z.boolean().default(false),
  /** Start with the last N logical lines; all when absent. */
  tail: z.number().int().min(0).optional(),
  /** The reader's end of the stream. */
  stream: StreamEnd,
});
export type ShimLogsRequest = z.infer<typeof ShimLogsRequest>;

/**
 * Request of `attach`: the process's output (channels `stdout`, `stderr`) streamed from its
 * monitor over NATS and, with `stdin`, the reader's `stdin` frames written to it; the reader
 * ending its direction closes the process's stdin. Attach before `start` to see all output.
 */
export const ShimAttachRequest = ShimTaskRef.extend({
  stdin: z.boolean().default(false),
  /** The reader's end of the stream. */
  stream: StreamEnd,
});
export type ShimAttachRequest = z.infer<typeof ShimAttachRequest>;

/** A pod's id as CNI knows it (CNI_CONTAINERID and the name of its netns and record files). */
export const ShimPodRef = z.object({
  podId: z
    .string()
    .regex(
      /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/,
      'podId: 1-128 of [A-Za-z0-9_.-], not starting with a symbol',
    ),
});
export type ShimPodRef = z.infer<typeof ShimPodRef>;

/**
 * A value in CNI_ARGS (a pod's namespace, name, uid, sandbox id): one `K=V` of a `;` list, so no
 * `;` or `=` (they separate the pairs) and no white space or control character.
 */
export const CniArgValue = z
  .string()
  .min(1)
  .max(253)
  // Cc spelled as its ranges: a Unicode property escape for it, built at module load, keeps ICU
  // data above the parser's freed memory in every service's malloc heap, ~5 MB each that glibc
  // cannot give back (see shim.test.ts).
  .regex(
    // biome-ignore lint/suspicious/noControlCharactersInRegex: the control characters it refuses
    /^[^;=\s\x00-\x1f\x7f-\x9f]+$/,
    'a CNI_ARGS value has no ";", "=", white space or control character',
  );

/**
 * Who a Kubernetes pod is, for the CNI plugins: passed on every ADD, CHECK and DEL of its chain
 * as `CNI_ARGS=IgnoreUnknown=1;K8S_POD_NAMESPACE=..;K8S_POD_NAME=..;K8S_POD_INFRA_CONTAINER_ID=..;K8S_POD_UID=..`,
 * as containerd's CRI does (Calico, Multus and Cilium look the pod up by them).
 */
export const ShimPodIdentity = z.object({
  namespace: CniArgValue,
  name: CniArgValue,
  uid: CniArgValue,
  /** The pod sandbox's id (K8S_POD_INFRA_CONTAINER_ID). */
  sandboxId: CniArgValue,
});
export type ShimPodIdentity = z.infer<typeof ShimPodIdentity>;

/** A rate or burst of the CNI `bandwidth` capability: bits per second (rates) or bits (bursts). */
const CniBits = z.number().int().positive().max(Number.MAX_SAFE_INTEGER);

/**
 * The CNI `bandwidth` capability (runtimeConfig.bandwidth of a plugin declaring it): a direction
 * without a rate is not limited.
 */
export const ShimBandwidth = z.object({
  ingressRate: CniBits.optional(),
  ingressBurst: CniBits.optional(),
  egressRate: CniBits.optional(),
  egressBurst: CniBits.optional(),
});
export type ShimBandwidth = z.infer<typeof ShimBandwidth>;

/** The CNI `dns` capability (runtimeConfig.dns): the pod's resolver settings. */
export const ShimCniDns = z.object({
  servers: z.array(z.string().max(64)).max(32).default([]),
  searches: z.array(z.string().max(256)).max(32).default([]),
  options: z.array(z.string().max(64)).max(32).default([]),
});
export type ShimCniDns = z.infer<typeof ShimCniDns>;

/**
 * network-setup: give a pod its network namespace on this node and attach it to the CNI network.
 * `pod`, `bandwidth` and `dns` are recorded with the pod's network, so its DEL (by a restarted
 * shim too) passes the plugins what its ADD did.
 */
export const ShimNetworkSetupRequest = ShimPodRef.extend({
  portMappings: z.array(ShimPortMapping).default([]),
  pod: ShimPodIdentity.optional(),
  bandwidth: ShimBandwidth.optional(),
  dns: ShimCniDns.optional(),
});
export type ShimNetworkSetupRequest = z.infer<typeof ShimNetworkSetupRequest>;

/** network-netns: a pod's pinned network namespace, made before its CNI ADD (network-setup attaches it). */
export const ShimPodNetns = z.object({ podId: z.string(), netnsPath: z.string() });
export type ShimPodNetns = z.infer<typeof ShimPodNetns>;

/** network-teardown: detach; `force` removes the record even when a plugin's DEL keeps failing. */
export const ShimNetworkTeardownRequest = ShimPodRef.extend({ force: z.boolean().default(false) });
export type ShimNetworkTeardownRequest = z.infer<typeof ShimNetworkTeardownRequest>;

/** DEL errors a forced teardown went past (empty when every plugin's DEL succeeded). */
export const ShimNetworkTeardownReply = z.object({ errors: z.array(z.string()) });
export type ShimNetworkTeardownReply = z.infer<typeof ShimNetworkTeardownReply>;

/** A pod's network: the namespace to join (OCI `linux.namespaces` path) and its addresses there. */
export const ShimPodNetwork = z.object({
  podId: z.string(),
  netnsPath: z.string(),
  network: z.string(),
  confFile: z.string(),
  ips: z.array(ShimPodAddress),
  gateway: z.string().optional(),
  interface: z.string(),
  mac: z.string().optional(),
  portMappings: z.array(ShimPortMapping),
});
export type ShimPodNetwork = z.infer<typeof ShimPodNetwork>;

/** One CNI network of the node's conf dir (`berth network ls`); `error` when its file is broken. */
export const ShimCniNetwork = z.object({
  name: z.string(),
  cniVersion: z.string(),
  plugins: z.array(z.string()),
  subnets: z.array(z.string()),
  file: z.string(),
  /** The network pods join: the first file by name that is not berth's own default, else berth's. */
  default: z.boolean(),
  error: z.string().optional(),
});
export type ShimCniNetwork = z.infer<typeof ShimCniNetwork>;

/** network-list: the node's CNI networks and the pods attached on it. */
export const ShimNetworkListReply = z.object({
  networks: z.array(ShimCniNetwork),
  pods: z.array(ShimPodNetwork),
});
export type ShimNetworkListReply = z.infer<typeof ShimNetworkListReply>;

/** network-pod-cidr: the kubelet's pod CIDRs (CRI UpdateRuntimeConfig) for the default network. */
export const ShimPodCidrRequest = z.object({ cidrs: z.array(z.string().max(64)).max(8) });
export type ShimPodCidrRequest = z.infer<typeof ShimPodCidrRequest>;

/** Whether the default network now uses the pod CIDR (`subnet`), and why (or why not). */
export const ShimPodCidrReply = z.object({
  applied: z.boolean(),
  subnet: z.string().optional(),
  reason: z.string(),
});
export type ShimPodCidrReply = z.infer<typeof ShimPodCidrReply>;

/**
 * The shim agent of one node: bundles, runc under conmon, exits. `wait` blocks until the process
 * exits: callers pass their own bound.
 */
export const ShimApi = defineService({
  name: Service.shim,
  scope: Scope.host,
  ops: {
    create: op({
      input: ShimCreateRequest,
      output: ShimState,
      timeoutMs: 60_000,
      description: 'write the bundle, mount the rootfs, runc create under conmon (and start it, with start)',
    }),
    start: op({
      input: ShimTaskRef,
      output: ShimState,
      timeoutMs: 30_000,
      description: 'start a created task or exec',
    }),
    state: op({
      input: ShimTaskRef,
      output: ShimState,
      timeoutMs: 10_000,
      description: 'state of a task or exec',
    }),
    kill: op({
      input: ShimKillRequest,
      output: ShimKillReply,
      timeoutMs: 10_000,
      description: 'signal a task (or all its processes) or an exec',
    }),
    wait: op({
      input: ShimTaskRef,
      output: ShimWaitReply,
      timeoutMs: 24 * 3600_000,
      description: 'block until the exit is persisted',
    }),
    delete: op({
      input: ShimTaskRef,
      output: ShimState,
      timeoutMs: 30_000,
      description: 'remove a stopped task or exec',
    }),
    exec: op({
      input: ShimExecRequest,
      output: ShimState,
      timeoutMs: 30_000,
      description: 'prepare a process in a running task',
    }),
    pause: op({
      input: ShimTaskRef,
      output: Empty,
      timeoutMs: 10_000,
      description: 'freeze every process of a task',
    }),
    resume: op({ input: ShimTaskRef, output: Empty, timeoutMs: 10_000, description: 'thaw a paused task' }),
    pids: op({
      input: ShimTaskRef,
      output: ShimPidsReply,
      timeoutMs: 10_000,
      description: 'host pids of the task',
    }),
    stats: op({
      input: ShimTaskRef,
      output: ShimStats,
      timeoutMs: 10_000,
      description: 'cgroup sample: cpu, memory, pids',
    }),
    update: op({
      input: ShimUpdateRequest,
      output: Empty,
      timeoutMs: 15_000,
      description: 'new linux.resources for a live task',
    }),
    'close-stdin': op({
      input: ShimTaskRef,
      output: Empty,
      timeoutMs: 10_000,
      description: "close a process's stdin",
    }),
    resize: op({
      input: ShimResizeRequest,
      output: Empty,
      timeoutMs: 5_000,
      description: 'terminal size of a task or exec',
    }),
    list: op({
      input: ShimListRequest,
      output: ShimListReply,
      timeoutMs: 10_000,
      description: 'one page of the tasks this node supervises',
    }),
    'exec-output': op({
      input: ShimTaskRef,
      output: ShimExecOutput,
      timeoutMs: 10_000,
      description: 'what an exec wrote, base64, 256 KiB of each stream at most',
    }),
    logs: op({
      input: ShimLogsRequest,
      output: StreamEnd,
      timeoutMs: 10_000,
      description: "open a stream of a task's or exec's CRI log (optionally followed to the exit)",
    }),
    attach: op({
      input: ShimAttachRequest,
      output: StreamEnd,
      timeoutMs: 10_000,
      description: "open a stream of a process's stdio through its monitor",
    }),
    'reopen-log': op({
      input: ShimTaskRef,
      output: Empty,
      timeoutMs: 5_000,
      description: "reopen a task's log file (after rotation)",
    }),
    'remove-files': op({
      input: ShimTaskRef,
      output: Empty,
      timeoutMs: 10_000,
      description: "remove a container's generated files and kept log (containers/<ns>/<id>/)",
    }),
    'network-netns': op({
      input: ShimPodRef,
      output: ShimPodNetns,
      timeoutMs: 30_000,
      description: 'pinned netns of a pod, not attached yet (network-setup attaches it); idempotent',
    }),
    'network-setup': op({
      input: ShimNetworkSetupRequest,
      output: ShimPodNetwork,
      timeoutMs: 150_000,
      description: 'pinned netns + CNI ADD of the default network; idempotent',
    }),
    'network-teardown': op({
      input: ShimNetworkTeardownRequest,
      output: ShimNetworkTeardownReply,
      timeoutMs: 150_000,
      description: 'CNI DEL, then remove the netns and record; idempotent',
    }),
    'network-status': op({
      input: ShimPodRef,
      output: ShimPodNetwork,
      timeoutMs: 10_000,
      description: "a pod's netns and addresses (NOT_FOUND when it has none)",
    }),
    'network-list': op({
      input: Empty,
      output: ShimNetworkListReply,
      timeoutMs: 10_000,
      description: 'CNI networks of the conf dir and the pods attached',
    }),
    'network-pod-cidr': op({
      input: ShimPodCidrRequest,
      output: ShimPodCidrReply,
      timeoutMs: 10_000,
      description: "use the kubelet's pod CIDR for berth's default network (never an administrator's config)",
    }),
  },
});
