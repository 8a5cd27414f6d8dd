import { posix } from 'node:path';
import {
  type CreateContainerRequest,
  capabilityName,
  errors,
  type ImageConfig,
  type Resources,
  SHIM_SHM_SOURCE,
} from '@berth/api';
import { CPU_PERIOD_US, defaultMounts, MASKED_PATHS, type OciMount, READONLY_PATHS } from './defaults.js';
import { mergeEnv } from './env.js';
import { provisionalUser } from './node-facts.js';

/** The OCI runtime spec version berth writes (runc 1.1 understands it). */
export const OCI_VERSION = '1.0.2-dev';

/** Files berth generates per container and bind-mounts in (absolute host paths). */
export interface GeneratedFiles {
  hosts: string;
  resolvConf: string;
  hostname: string;
}

/** Everything the generator needs; all I/O (the image's config) happened before. */
export interface SpecInput {
  id: string;
  namespace: string;
  request: CreateContainerRequest;
  /** The image config's `config` section. */
  image: ImageConfig['config'];
  files: GeneratedFiles;
}

/** The generated spec plus facts the caller stores beside it. */
export interface GeneratedSpec {
  spec: Record<string, unknown>;
  args: string[];
  /** user[:group] the container runs as (the request's, else the image's): its node resolves it. */
  user: string;
  hostname: string;
  stopSignal: string;
}

/** The hostname a container gets: the user's, else the first 12 characters of its id. */
export function containerHostname(id: string, req: CreateContainerRequest, hostHostname: string): string {
  if (req.hostname) return req.hostname;
  return req.network === 'host' ? hostHostname : id.slice(0, 12);
}

/**
 * Builds the OCI runtime spec of a container from its image config and the user's options, on
 * containerd's defaults. Pure: same input, same spec. Bad options throw INVALID_ARGUMENT. The
 * facts of the container's node (user ids, capabilities, HOME, seccomp) are left for its shim to
 * fill in at task create: see node-facts.ts for what the stored spec holds until then.
 */
export function generateSpec(input: SpecInput, hostHostname: string): GeneratedSpec {
  const { id, namespace, request: req } = input;
  const img = input.image ?? {};

  const args = commandOf(req, img);
  const hostname = containerHostname(id, req, hostHostname);
  // HOSTNAME (as Docker and containerd's CRI set it) and TERM under the image's Env: an image's
  // own values win, the request's over both. A host name left to the node (the host network's,
  // which the shim there knows) is given as HOSTNAME by that shim.
  const env = mergeEnv(
    hostname ? [`HOSTNAME=${hostname}`] : [],
    req.tty ? ['TERM=xterm'] : [],
    img.Env,
    req.env,
  );
  const cwd = req.workdir || img.WorkingDir || '/';
  if (!cwd.startsWith('/')) throw errors.invalid(`working directory "${cwd}" must be an absolute path`);

  const user = req.user ?? img.User ?? '';
  if (user.split(':').length > 2 || user.startsWith(':') || user.endsWith(':')) {
    throw errors.invalid(`invalid user "${user}": expected user[:group]`);
  }
  // Names are checked now; which of them the node can grant is its shim's answer.
  for (const c of [...(req.capAdd ?? []), ...(req.capDrop ?? [])]) capabilityName(c);

  const process: Record<string, unknown> = {
    terminal: req.tty ?? false,
    user: provisionalUser(user, req.additionalGids),
    args,
    env,
    cwd,
    noNewPrivileges: req.noNewPrivileges ?? false,
  };
  if (!req.inheritRlimits) process.rlimits = [{ type: 'RLIMIT_NOFILE', hard: 1024, soft: 1024 }];
  // As asked, negative too: the node's shim raises a score it cannot lower (no CAP_SYS_RESOURCE).
  if (req.oomScoreAdj !== undefined) process.oomScoreAdj = req.oomScoreAdj;

  const userDests = new Set((req.mounts ?? []).map((m) => cleanPath(m.destination)));
  const mounts: OciMount[] = defaultMounts()
    .filter((m) => !replaced(m.destination, userDests))
    .map((m) =>
      // A privileged container may write /sys (and its cgroups), as docker's --privileged.
      req.privileged && m.type !== 'proc' ? { ...m, options: m.options.filter((o) => o !== 'ro') } : m,
    )
    // Made by the shim on the node, where other containers can bind it (see SHIM_SHM_SOURCE).
    .map((m) => (req.shm === 'shareable' && m.destination === SHM ? { ...m, source: SHIM_SHM_SOURCE } : m));
  const ro = req.readonlyRootfs ?? false;
  const fileOpts = ['rbind', 'rprivate', ro ? 'ro' : 'rw'];
  const own: OciMount[] = [];
  for (const [destination, source] of [
    ['/etc/hosts', input.files.hosts],
    ['/etc/resolv.conf', input.files.resolvConf],
    ['/etc/hostname', input.files.hostname],
  ] as const) {
    // A caller's own file (a pod's shared hosts/resolv.conf, from the CRI gateway) wins.
    if (!userDests.has(destination)) own.push({ destination, type: 'bind', source, options: fileOpts });
  }
  for (const m of req.mounts ?? []) {
    if (cleanPath(m.destination) === '/') {
      throw errors.invalid('a bind mount cannot replace the container\'s "/"');
    }
    own.push({
      destination: m.destination,
      type: 'bind',
      source: m.source,
      options: ['rbind', `r${(m.propagation ?? 'private').replace(/^r/, '')}`, m.readonly ? 'ro' : 'rw'],
    });
  }
  // Parents before what is mounted under them (a pod's /dev/shm over a request's own /dev), as
  // containerd orders them; stable, so mounts at one depth keep the request's order.
  mounts.push(...own.sort((a, b) => depth(a.destination) - depth(b.destination)));
  // As containerd: a propagating bind mount needs the rootfs mount to propagate too.
  const props = (req.mounts ?? []).map((m) => m.propagation);
  const rootfsPropagation = props.includes('rshared')
    ? 'rshared'
    : props.includes('rslave')
      ? 'rslave'
      : undefined;

  const namespaces: { type: string; path?: string }[] = [];
  for (const type of ['pid', 'ipc', 'uts'] as const) {
    const mode = req.namespaces?.[type] ?? 'private';
    if (mode === 'private') namespaces.push({ type });
    else if (mode !== 'host') namespaces.push({ type, path: mode });
  }
  namespaces.push({ type: 'mount' });
  const net = req.network ?? 'none';
  // The container manager turns `bridge` into the path of the namespace its shim set up.
  if (net === 'bridge') throw errors.internal('network "bridge" reached the spec without its namespace path');
  if (net === 'none') namespaces.push({ type: 'network' });
  else if (net !== 'host') namespaces.push({ type: 'network', path: net });

  const sysctl = req.sysctls ?? {};
  if (net === 'host' && Object.keys(sysctl).some((k) => k.startsWith('net.'))) {
    throw errors.invalid('net.* sysctls cannot be set on a container in the host network');
  }

  const linux: Record<string, unknown> = {
    namespaces,
    maskedPaths: req.privileged ? [] : (req.maskedPaths ?? [...MASKED_PATHS]),
    readonlyPaths: req.privileged ? [] : (req.readonlyPaths ?? [...READONLY_PATHS]),
    cgroupsPath: req.cgroupsPath ?? `/berth/${namespace}/${id}`,
    resources: linuxResources(req.resources ?? {}, req.privileged ?? false),
    ...(Object.keys(sysctl).length ? { sysctl } : {}),
    ...(rootfsPropagation ? { rootfsPropagation } : {}),
  };

  const spec: Record<string, unknown> = {
    ociVersion: OCI_VERSION,
    process,
    root: { path: 'rootfs', readonly: ro },
    // The host name is set only in a UTS namespace of the container's own: runc refuses to in the
    // node's, and one the container joins (its pod's) has its owner's already, as containerd
    // leaves it (setting it there would rename whoever else is in it).
    ...((req.namespaces?.uts ?? 'private') === 'private' ? { hostname } : {}),
    mounts,
    linux,
    ...(req.annotations && Object.keys(req.annotations).length ? { annotations: req.annotations } : {}),
  };
  return { spec, args, user, hostname, stopSignal: req.stopSignal || img.StopSignal || 'SIGTERM' };
}

/** Where the default shm tmpfs is mounted. */
const SHM = '/dev/shm';

/** A container path cleaned as Go's filepath.Clean does (no `.`, `..`, doubled or trailing `/`). */
export function cleanPath(p: string): string {
  const n = posix.normalize(p);
  return n.length > 1 ? n.replace(/\/+$/, '') : n;
}

/** Path components of a cleaned container path ("/" has one, "/dev/shm" three), as containerd counts. */
function depth(p: string): number {
  return cleanPath(p).split('/').length;
}

/**
 * True when a request's own mounts replace the default mount at `dest`: one at the same place,
 * or one on /dev for everything under it (containerd's CRI drops those rather than stack them).
 */
function replaced(dest: string, own: Set<string>): boolean {
  const d = cleanPath(dest);
  return own.has(d) || (own.has('/dev') && d.startsWith('/dev/'));
}

/** Docker's rule: --entrypoint replaces the image's Entrypoint and drops its Cmd. */
function commandOf(req: CreateContainerRequest, img: NonNullable<ImageConfig['config']>): string[] {
  let args: string[];
  if (req.entrypoint !== undefined) args = [...req.entrypoint, ...(req.cmd ?? [])];
  else args = [...(img.Entrypoint ?? []), ...(req.cmd ?? img.Cmd ?? [])];
  if (args.length === 0 || args[0] === '') {
    throw errors.invalid('no command specified: the image has no Entrypoint or Cmd and none was given');
  }
  return args;
}

/**
 * linux.resources: deny all devices (runc re-allows its defaults), then the limits asked for.
 * A memory+swap limit must be -1 or at least the memory limit, which it needs (runc and the
 * kernel refuse anything else, but only when the task is made): INVALID_ARGUMENT here.
 */
export function linuxResources(r: Resources, allDevices = false): Record<string, unknown> {
  const out: Record<string, unknown> = { devices: [{ allow: allDevices, access: 'rwm' }] };
  const swap = r.memorySwapBytes;
  if (swap !== undefined && swap !== -1) {
    if (r.memoryBytes === undefined) {
      throw errors.invalid(`memory+swap limit ${swap} needs a memory limit (or -1 for unlimited swap)`);
    }
    if (swap < r.memoryBytes) {
      throw errors.invalid(
        `memory+swap limit ${swap} must be at least the memory limit ${r.memoryBytes} (or -1 for unlimited swap)`,
      );
    }
  }
  if (r.memoryBytes !== undefined || swap !== undefined) {
    out.memory = {
      ...(r.memoryBytes !== undefined ? { limit: r.memoryBytes } : {}),
      ...(swap !== undefined ? { swap } : {}),
    };
  }
  const cpu: Record<string, number> = {};
  if (r.cpus !== undefined) {
    cpu.quota = Math.round(r.cpus * CPU_PERIOD_US);
    cpu.period = CPU_PERIOD_US;
  }
  if (r.cpuShares !== undefined) cpu.shares = r.cpuShares;
  const cpuset: Record<string, string> = {};
  if (r.cpusetCpus) cpuset.cpus = r.cpusetCpus;
  if (r.cpusetMems) cpuset.mems = r.cpusetMems;
  if (Object.keys(cpu).length || Object.keys(cpuset).length) out.cpu = { ...cpu, ...cpuset };
  if (r.pidsLimit !== undefined && r.pidsLimit > 0) out.pids = { limit: r.pidsLimit };
  // Never an empty map: runc 1.1 refuses any `unified`, even {}, on a cgroup v1 node.
  if (r.unified && Object.keys(r.unified).length) out.unified = { ...r.unified };
  return out;
}

/**
 * A container's resources after an update: each limit the update sets replaces the old one; its
 * `unified` keys are added to (or change) the old ones, as containerd's CRI merges them.
 */
export function mergeResources(old: Resources, update: Resources): Resources {
  const merged: Resources = { ...old, ...update };
  if (old.unified || update.unified) merged.unified = { ...old.unified, ...update.unified };
  return merged;
}
