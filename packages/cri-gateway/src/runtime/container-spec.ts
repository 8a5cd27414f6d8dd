import { join, posix } from 'node:path';
import {
  type AppArmorRequest,
  BerthError,
  type BindMount,
  Code,
  CPU_LIST,
  type CreateContainerRequest,
  DEVICE_PERMISSIONS,
  type DeviceMapping,
  type Resources,
  type SeccompRequest,
  UNIFIED_KEY,
} from '@berth/api';
import { allowedOomScoreAdj } from '@berth/kit/oom-score';
import { type CgroupSupport, checkCgroupSupport } from '@berth/shim/cgroup-support';
import { appArmorOf } from './apparmor.js';
import {
  type ContainerMeta,
  CriKind,
  CriLabel,
  containerName,
  type NamespaceOptions,
  NsMode,
  type SandboxMeta,
} from './meta.js';
import { cgroupsPathOf, podShm, seccompOf } from './sandbox-spec.js';
import {
  absPath,
  int,
  invalid,
  message,
  namespaceOptions,
  relPath,
  required,
  runAsUser,
  stringList,
  stringMap,
  supplementalGroups,
} from './validate.js';

/** A CRI ContainerConfig, checked: what CreateContainer needs before it touches anything. */
export interface ContainerConfig {
  metadata: ContainerMeta['metadata'];
  image: string;
  /** ImageSpec.user_specified_image ("" when the kubelet sent none). */
  userImage: string;
  command: string[];
  args: string[];
  workingDir: string;
  env: string[];
  mounts: BindMount[];
  rawMounts: unknown[];
  labels: Record<string, string>;
  annotations: Record<string, string>;
  logPath: string;
  tty: boolean;
  stdin: boolean;
  /** CRI stdin_once: the first attach's end of input closes the container's stdin. */
  stdinOnce: boolean;
  stopSignal?: string;
  user?: string;
  additionalGids: number[];
  capAdd: string[];
  capDrop: string[];
  privileged: boolean;
  /** The seccomp filter asked for (the shim on the node builds it; privileged gets none). */
  seccomp: SeccompRequest;
  /** The AppArmor profile asked for (the shim on the node resolves it; privileged gets no default). */
  apparmor: AppArmorRequest;
  readonlyRootfs: boolean;
  /** Host devices by path (the kubelet's device plugins): resolved and allowed on the node. */
  devices: DeviceMapping[];
  noNewPrivileges: boolean;
  maskedPaths: string[];
  readonlyPaths: string[];
  namespaceOptions: NamespaceOptions;
  resources: Resources;
  oomScoreAdj?: number;
}

const unimplemented = (what: string) =>
  new BerthError(Code.UNIMPLEMENTED, `CRI ${what} is not implemented by berth yet`);

/**
 * Checks CRI LinuxContainerResources; fields berth cannot apply are UNIMPLEMENTED, never ignored.
 * `unified` and `memory_swap_limit_in_bytes` pass as containerd's CRI passes them (OCI
 * linux.resources.unified and memory.swap); whether this node's cgroups can apply them is the
 * caller's (nodeResources). On create (`update` false) a swap limit needs a memory limit;
 * an update may keep the container's.
 */
export function parseResources(
  raw: unknown,
  field: string,
  opts: { update?: boolean } = {},
): { resources: Resources; oomScoreAdj?: number } {
  const r = message(raw, field);
  if (!r) return { resources: {} };
  const resources: Resources = {};
  const quota = int(r.cpu_quota, `${field}.cpu_quota`);
  const period = int(r.cpu_period, `${field}.cpu_period`);
  if (quota > 0) resources.cpus = quota / (period > 0 ? period : 100_000);
  const shares = int(r.cpu_shares, `${field}.cpu_shares`);
  if (shares > 0) resources.cpuShares = Math.max(2, shares);
  const mem = int(r.memory_limit_in_bytes, `${field}.memory_limit_in_bytes`);
  if (mem > 0) resources.memoryBytes = mem;
  const swap = int(r.memory_swap_limit_in_bytes, `${field}.memory_swap_limit_in_bytes`);
  if (swap !== 0) {
    const f = `${field}.memory_swap_limit_in_bytes`;
    if (swap < -1) throw invalid(f, `must be -1 (unlimited swap) or a limit in bytes: ${swap}`);
    if (swap > 0 && mem > 0 && swap < mem) {
      throw invalid(f, `memory+swap limit ${swap} must be at least memory_limit_in_bytes ${mem}`);
    }
    if (swap > 0 && mem <= 0 && !opts.update) throw invalid(f, 'is set without memory_limit_in_bytes');
    resources.memorySwapBytes = swap;
  }
  for (const [key, name] of [
    ['cpusetCpus', 'cpuset_cpus'],
    ['cpusetMems', 'cpuset_mems'],
  ] as const) {
    const v = r[name];
    if (v === undefined || v === null || v === '') continue;
    if (typeof v !== 'string' || !CPU_LIST.test(v)) {
      throw invalid(`${field}.${name}`, `must be a Linux CPU list such as "0-3,6": ${JSON.stringify(v)}`);
    }
    resources[key] = v;
  }
  const huge = Array.isArray(r.hugepage_limits) ? (r.hugepage_limits as { limit?: unknown }[]) : [];
  if (huge.some((h) => int(h.limit, `${field}.hugepage_limits.limit`) > 0)) {
    throw unimplemented(`${field}.hugepage_limits`);
  }
  const unified = stringMap(r.unified, `${field}.unified`);
  for (const k of Object.keys(unified)) {
    if (!UNIFIED_KEY.test(k)) throw invalid(`${field}.unified`, `"${k}" is not a cgroup v2 file name`);
  }
  if (Object.keys(unified).length) resources.unified = unified;
  const oom = int(r.oom_score_adj, `${field}.oom_score_adj`);
  if (oom < -1000 || oom > 1000) throw invalid(`${field}.oom_score_adj`, `must be in [-1000, 1000]: ${oom}`);
  // A score below the gateway's own (the kubelet's guaranteed pods ask -997) is raised to it when
  // the gateway may not lower it (no CAP_SYS_RESOURCE), as containerd's CRI with
  // restrict_oom_score_adj does: the spec and ContainerStatus hold the score the container gets.
  // The node's shim applies the same rule to its own score (CreateContainerRequest.oomScoreAdj).
  const applied = allowedOomScoreAdj(oom);
  return { resources, ...(applied !== 0 ? { oomScoreAdj: applied } : {}) };
}

/**
 * The resources as this node applies them. What its cgroups cannot apply (`unified` on cgroup v1,
 * a swap limit without swap accounting) is refused FAILED_PRECONDITION naming the CRI field: runc
 * would only fail at StartContainer, or in the middle of an update. Where swap is accounted, a
 * memory limit without a swap limit gets swap = memory (no swap beyond the limit), as containerd's
 * CRI does. The gateway runs on the node it answers for.
 */
export function nodeResources(resources: Resources, node: CgroupSupport, field: string): Resources {
  checkCgroupSupport({ unified: resources.unified, swap: resources.memorySwapBytes }, node, {
    unified: `${field}.unified`,
    swap: `${field}.memory_swap_limit_in_bytes`,
  });
  if (resources.memoryBytes !== undefined && resources.memorySwapBytes === undefined && node.swapAccounting) {
    return { ...resources, memorySwapBytes: resources.memoryBytes };
  }
  return resources;
}

/** CRI MountPropagation (by name, or its number) to a bind mount's propagation. */
const PROPAGATION: Record<string, 'private' | 'rslave' | 'rshared'> = {
  PROPAGATION_PRIVATE: 'private',
  PROPAGATION_HOST_TO_CONTAINER: 'rslave',
  PROPAGATION_BIDIRECTIONAL: 'rshared',
  '0': 'private',
  '1': 'rslave',
  '2': 'rshared',
};

function parseMounts(raw: unknown): { mounts: BindMount[]; raw: unknown[] } {
  const list = Array.isArray(raw) ? raw : [];
  const mounts = list.map((m: unknown, i: number): BindMount => {
    const f = `config.mounts[${i}]`;
    const mm = message(m, f) ?? {};
    const destination = absPath(mm.container_path, `${f}.container_path`);
    const source = absPath(mm.host_path, `${f}.host_path`);
    if (!destination) throw invalid(`${f}.container_path`, 'is required');
    if (message(mm.image, `${f}.image`)?.image) throw unimplemented(`${f}.image (image volumes)`);
    if (!source) throw invalid(`${f}.host_path`, 'is required');
    const propagation = PROPAGATION[String(mm.propagation ?? 'PROPAGATION_PRIVATE')];
    if (!propagation) throw invalid(`${f}.propagation`, `unknown value ${String(mm.propagation)}`);
    if (mm.recursive_read_only) throw unimplemented(`${f}.recursive_read_only`);
    return {
      source,
      destination,
      ...(mm.readonly ? { readonly: true } : {}),
      ...(propagation !== 'private' ? { propagation } : {}),
    };
  });
  return { mounts, raw: list };
}

/**
 * CRI ContainerConfig.devices, checked: absolute paths, permissions some of "rwm" (empty: all,
 * as runc reads an empty access).
 */
function parseDevices(raw: unknown): DeviceMapping[] {
  return (Array.isArray(raw) ? raw : []).map((d: unknown, i: number) => {
    const f = `config.devices[${i}]`;
    const m = message(d, f) ?? {};
    const perms = typeof m.permissions === 'string' && m.permissions !== '' ? m.permissions : 'rwm';
    if (!DEVICE_PERMISSIONS.test(perms)) {
      throw invalid(`${f}.permissions`, `must be some of "rwm": ${JSON.stringify(perms)}`);
    }
    const path = (field: string) => {
      const p = absPath(m[field], `${f}.${field}`);
      if (!p) throw invalid(`${f}.${field}`, 'is required');
      return p;
    };
    return { hostPath: path('host_path'), containerPath: path('container_path'), permissions: perms };
  });
}

/** Checks a CRI ContainerConfig; bad input throws INVALID_ARGUMENT naming the field. */
export function parseContainerConfig(raw: unknown, logDirectory: string): ContainerConfig {
  const config = message(raw, 'config');
  if (!config) throw invalid('config', 'is required');
  const md = message(config.metadata, 'config.metadata');
  if (!md) throw invalid('config.metadata', 'is required');
  const imageSpec = message(config.image, 'config.image');
  const image = required(imageSpec?.image, 'config.image.image');
  const userImage = typeof imageSpec?.user_specified_image === 'string' ? imageSpec.user_specified_image : '';
  const env = (Array.isArray(config.envs) ? config.envs : []).map((kv: unknown, i: number) => {
    const m = message(kv, `config.envs[${i}]`) ?? {};
    const key = required(m.key, `config.envs[${i}].key`);
    if (key.includes('=')) throw invalid(`config.envs[${i}].key`, `must not contain "=": "${key}"`);
    // KeyValue.value is `bytes` in this proto (wire-identical to a string): grpc-js gives a Buffer.
    const value = Buffer.isBuffer(m.value)
      ? m.value.toString('utf8')
      : typeof m.value === 'string'
        ? m.value
        : '';
    return `${key}=${value}`;
  });
  const devices = parseDevices(config.devices);
  // A device-plugin or DRA pod would start without its device: refused, as `devices` is.
  if (Array.isArray(config.CDI_devices) && config.CDI_devices.length) {
    throw unimplemented('config.CDI_devices (CDI devices)');
  }
  const logRel = relPath(config.log_path, 'config.log_path');
  const linux = message(config.linux, 'config.linux') ?? {};
  const scField = 'config.linux.security_context';
  const sc = message(linux.security_context, scField) ?? {};
  const apparmor = appArmorOf(sc, scField);
  const caps = message(sc.capabilities, `${scField}.capabilities`) ?? {};
  if (stringList(caps.add_ambient_capabilities, `${scField}.capabilities.add_ambient_capabilities`).length) {
    throw unimplemented(`${scField}.capabilities.add_ambient_capabilities`);
  }
  const gids = supplementalGroups(sc, scField);
  const user = runAsUser(sc, scField);
  const stop = typeof config.stop_signal === 'string' ? config.stop_signal : 'RUNTIME_DEFAULT';
  const { resources, oomScoreAdj } = parseResources(linux.resources, 'config.linux.resources');
  const { mounts, raw: rawMounts } = parseMounts(config.mounts);
  return {
    metadata: {
      name: required(md.name, 'config.metadata.name'),
      attempt: int(md.attempt, 'config.metadata.attempt'),
    },
    image,
    userImage,
    command: stringList(config.command, 'config.command'),
    args: stringList(config.args, 'config.args'),
    workingDir: typeof config.working_dir === 'string' ? config.working_dir : '',
    env,
    mounts,
    rawMounts,
    labels: stringMap(config.labels, 'config.labels'),
    annotations: stringMap(config.annotations, 'config.annotations'),
    logPath: logRel && logDirectory ? join(logDirectory, logRel) : '',
    tty: config.tty === true,
    stdin: config.stdin === true,
    stdinOnce: config.stdin_once === true,
    ...(stop !== 'RUNTIME_DEFAULT' ? { stopSignal: stop } : {}),
    ...(user ? { user } : {}),
    additionalGids: gids,
    capAdd: stringList(caps.add_capabilities, `${scField}.capabilities.add_capabilities`),
    capDrop: stringList(caps.drop_capabilities, `${scField}.capabilities.drop_capabilities`),
    privileged: sc.privileged === true,
    devices,
    seccomp: seccompOf(sc, scField),
    apparmor,
    readonlyRootfs: sc.readonly_rootfs === true,
    noNewPrivileges: sc.no_new_privs === true,
    maskedPaths: stringList(sc.masked_paths, `${scField}.masked_paths`),
    readonlyPaths: stringList(sc.readonly_paths, `${scField}.readonly_paths`),
    namespaceOptions: namespaceOptions(sc.namespace_options, `${scField}.namespace_options`),
    resources,
    ...(oomScoreAdj !== undefined ? { oomScoreAdj } : {}),
  };
}

/** Where the pod's pause container is and what its files are: what a container joins. */
export interface SandboxContext {
  id: string;
  meta: SandboxMeta;
  /** The pause process (its /proc/<pid>/ns/* are the pod's namespaces). */
  pid: number;
  /**
   * The pause container's generated hosts, resolv.conf and hostname (its shim wrote them), and
   * the pod's /dev/shm tmpfs (`shm`, its shim mounted it).
   */
  filesDir: string;
  cgroupParent: string;
  /** The pid of the TARGET container, when the container asks pid TARGET. */
  targetPid?: number;
  /** The pod's host name (its /etc/hostname): its containers' host name and HOSTNAME. */
  hostname?: string;
}

/**
 * The task-service request of a container in a pod: it joins the pause container's namespaces
 * as its NamespaceOption says, shares the pod's /etc files and /dev/shm, and logs to the pod's
 * log directory. The container's own mounts at those places win, as in containerd's CRI. It is
 * made under `opts.id`, the container id the gateway chose, which also names its cgroup under the
 * pod's cgroup parent.
 */
export function containerRequest(
  c: ContainerConfig,
  opts: { id: string; sandbox: SandboxContext; imageName: string; meta: ContainerMeta },
): CreateContainerRequest {
  const sb = opts.sandbox;
  const ns = (type: string) => `/proc/${sb.pid}/ns/${type}`;
  const podNs = sb.meta.namespaceOptions;
  const host = podNs.network === NsMode.NODE;
  let pid: string;
  if (c.namespaceOptions.pid === NsMode.NODE) pid = 'host';
  else if (c.namespaceOptions.pid === NsMode.POD) pid = podNs.pid === NsMode.NODE ? 'host' : ns('pid');
  else if (c.namespaceOptions.pid === NsMode.TARGET) {
    if (!sb.targetPid) {
      throw invalid(
        'config.linux.security_context.namespace_options.target_id',
        'names no running container',
      );
    }
    pid = `/proc/${sb.targetPid}/ns/pid`;
  } else pid = 'private';
  const own = new Set(c.mounts.map((m) => posix.normalize(m.destination).replace(/(.)\/+$/, '$1')));
  const shared: BindMount[] = [];
  for (const [dest, file] of [
    ['/etc/hosts', 'hosts'],
    ['/etc/resolv.conf', 'resolv.conf'],
    ['/etc/hostname', 'hostname'],
  ] as const) {
    if (!own.has(dest)) {
      shared.push({ source: join(sb.filesDir, file), destination: dest, readonly: c.readonlyRootfs });
    }
  }
  // Writable even on a read-only rootfs: it is the pod's IPC namespace's shared memory. A pod made
  // before berth shared it has none to bind (its containers keep their own, as they had).
  if (!own.has('/dev/shm') && (sb.meta.sharedShm || podNs.ipc === NsMode.NODE)) {
    shared.push({ source: podShm(sb.filesDir, podNs.ipc), destination: '/dev/shm' });
  }
  const name = containerName(sb.id, c.metadata);
  const cgroupsPath = cgroupsPathOf(sb.cgroupParent, opts.id);
  return {
    id: opts.id,
    image: opts.imageName,
    name,
    ...(c.command.length ? { entrypoint: c.command } : {}),
    ...(c.args.length ? { cmd: c.args } : {}),
    ...(c.env.length ? { env: c.env } : {}),
    ...(c.workingDir ? { workdir: c.workingDir } : {}),
    ...(c.user ? { user: c.user } : {}),
    ...(c.additionalGids.length ? { additionalGids: c.additionalGids } : {}),
    // The pod's: runc sets it in the UTS namespace the container joins, and the task-service gives
    // it as HOSTNAME under the image's Env, as containerd's CRI does.
    ...(sb.hostname ? { hostname: sb.hostname } : {}),
    mounts: [...shared, ...c.mounts],
    resources: c.resources,
    readonlyRootfs: c.readonlyRootfs,
    ...(c.devices.length ? { devices: c.devices } : {}),
    noNewPrivileges: c.noNewPrivileges,
    // The node's limits (the shim's), as containerd's CRI: a server or database in a pod cannot
    // raise a hard limit of 1024 itself.
    inheritRlimits: true,
    network: host ? 'host' : (sb.meta.netnsPath ?? ns('net')),
    namespaces: {
      pid,
      ipc: podNs.ipc === NsMode.NODE ? 'host' : ns('ipc'),
      // The node's in the host network, as the pause's (containerd leaves the namespace out).
      uts: host ? 'host' : ns('uts'),
    },
    ...(c.capAdd.length ? { capAdd: c.capAdd } : {}),
    ...(c.capDrop.length ? { capDrop: c.capDrop } : {}),
    ...(c.oomScoreAdj !== undefined ? { oomScoreAdj: c.oomScoreAdj } : {}),
    tty: c.tty,
    stdin: c.stdin,
    labels: {
      [CriLabel.kind]: CriKind.container,
      [CriLabel.sandboxId]: sb.id,
      [CriLabel.meta]: JSON.stringify(opts.meta),
    },
    ...(Object.keys(c.annotations).length ? { annotations: c.annotations } : {}),
    ...(c.logPath ? { logPath: c.logPath } : {}),
    ...(c.stopSignal ? { stopSignal: c.stopSignal } : {}),
    ...(cgroupsPath ? { cgroupsPath } : {}),
    // Exactly the request's, none when it sends none (as containerd's CRI): the kubelet sends the
    // defaults itself for a container with the default procMount, and [] for an unmasked one.
    maskedPaths: c.maskedPaths,
    readonlyPaths: c.readonlyPaths,
    ...(c.privileged ? { privileged: true } : {}),
    seccomp: c.seccomp,
    apparmor: c.apparmor,
  };
}
