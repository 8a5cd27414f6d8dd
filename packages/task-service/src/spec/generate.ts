import { type CreateContainerRequest, errors, type ImageConfig, type Resources } from '@berth/api';
import {
  ALL_CAPS,
  CPU_PERIOD_US,
  DEFAULT_CAPS,
  defaultMounts,
  MASKED_PATHS,
  type OciMount,
  READONLY_PATHS,
} from './defaults.js';
import { envValue, mergeEnv } from './env.js';
import { type GroupEntry, type PasswdEntry, resolveUser } from './user.js';

/** The OCI runtime spec version berth writes (runc 1.1 understands it). */
export const OCI_VERSION = '1.0.2-dev';

/** Files berth generates per container and bind-mounts in (absolute host paths). */
export interface GeneratedFiles {
  hosts: string;
  resolvConf: string;
  hostname: string;
}

/** Everything the generator needs; all I/O (image, rootfs files) happened before. */
export interface SpecInput {
  id: string;
  namespace: string;
  request: CreateContainerRequest;
  /** The image config's `config` section. */
  image: ImageConfig['config'];
  /** The rootfs's /etc/passwd and /etc/group, parsed (empty when the image has none). */
  passwd: PasswdEntry[];
  group: GroupEntry[];
  files: GeneratedFiles;
  /**
   * Capabilities the runtime can grant (its bounding set, see hostCapabilities); `ALL` and
   * privileged expand to these. Default: every capability the kernel knows.
   */
  hostCaps?: readonly string[];
}

/** The generated spec plus facts the caller stores beside it. */
export interface GeneratedSpec {
  spec: Record<string, unknown>;
  args: string[];
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
 * containerd's defaults. Pure: same input, same spec. Bad options throw INVALID_ARGUMENT.
 */
export function generateSpec(input: SpecInput, hostHostname: string): GeneratedSpec {
  const { id, namespace, request: req } = input;
  const img = input.image ?? {};

  const args = commandOf(req, img);
  const env = mergeEnv(img.Env, req.tty ? ['TERM=xterm'] : [], req.env);
  const cwd = req.workdir || img.WorkingDir || '/';
  if (!cwd.startsWith('/')) throw errors.invalid(`working directory "${cwd}" must be an absolute path`);

  const user = resolveUser(req.user ?? img.User ?? '', input.passwd, input.group);
  const gids = [...new Set([...user.additionalGids, ...(req.additionalGids ?? [])])];
  if (user.home && envValue(env, 'HOME') === undefined) env.push(`HOME=${user.home}`);
  else if (envValue(env, 'HOME') === undefined) env.push('HOME=/');

  const host = input.hostCaps ?? ALL_CAPS;
  const caps = req.privileged ? [...host] : capabilities(req.capAdd ?? [], req.capDrop ?? [], host);
  const hostname = containerHostname(id, req, hostHostname);

  const process: Record<string, unknown> = {
    terminal: req.tty ?? false,
    user: {
      uid: user.uid,
      gid: user.gid,
      ...(gids.length ? { additionalGids: gids } : {}),
    },
    args,
    env,
    cwd,
    capabilities: { bounding: caps, effective: caps, permitted: caps },
    rlimits: [{ type: 'RLIMIT_NOFILE', hard: 1024, soft: 1024 }],
    noNewPrivileges: req.noNewPrivileges ?? false,
  };
  // Only non-negative values: lowering the score needs CAP_SYS_RESOURCE, which berth never assumes.
  if (req.oomScoreAdj !== undefined) process.oomScoreAdj = req.oomScoreAdj;

  const mounts: OciMount[] = defaultMounts().map((m) =>
    // A privileged container may write /sys (and its cgroups), as docker's --privileged.
    req.privileged && m.type !== 'proc' ? { ...m, options: m.options.filter((o) => o !== 'ro') } : m,
  );
  const ro = req.readonlyRootfs ?? false;
  const fileOpts = ['rbind', 'rprivate', ro ? 'ro' : 'rw'];
  const userDests = new Set((req.mounts ?? []).map((m) => m.destination.replace(/\/+$/, '')));
  for (const [destination, source] of [
    ['/etc/hosts', input.files.hosts],
    ['/etc/resolv.conf', input.files.resolvConf],
    ['/etc/hostname', input.files.hostname],
  ] as const) {
    // A caller's own file (a pod's shared hosts/resolv.conf, from the CRI gateway) wins.
    if (!userDests.has(destination)) mounts.push({ destination, type: 'bind', source, options: fileOpts });
  }
  for (const m of req.mounts ?? []) {
    if (m.destination === '/') throw errors.invalid('a bind mount cannot replace the container\'s "/"');
    mounts.push({
      destination: m.destination,
      type: 'bind',
      source: m.source,
      options: ['rbind', 'rprivate', m.readonly ? 'ro' : 'rw'],
    });
  }

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
  };

  const spec: Record<string, unknown> = {
    ociVersion: OCI_VERSION,
    process,
    root: { path: 'rootfs', readonly: ro },
    hostname,
    mounts,
    linux,
    ...(req.annotations && Object.keys(req.annotations).length ? { annotations: req.annotations } : {}),
  };
  return { spec, args, hostname, stopSignal: req.stopSignal || img.StopSignal || 'SIGTERM' };
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

function capName(raw: string): string {
  const up = raw.toUpperCase();
  const name = up.startsWith('CAP_') ? up : `CAP_${up}`;
  if (up !== 'ALL' && !(ALL_CAPS as readonly string[]).includes(name)) {
    throw errors.invalid(`unknown capability "${raw}"`);
  }
  return up === 'ALL' ? 'ALL' : name;
}

/**
 * The default set, plus additions, minus drops ("ALL" works on either side, drops win last).
 * An addition the host cannot grant is refused by name rather than failing later in runc.
 */
export function capabilities(add: string[], drop: string[], host: readonly string[] = ALL_CAPS): string[] {
  const adds = add.map(capName);
  const drops = drop.map(capName);
  for (const c of adds) {
    if (c !== 'ALL' && !host.includes(c))
      throw errors.invalid(`capability "${c}" is not available on this host`);
  }
  let set = new Set<string>(adds.includes('ALL') ? host : DEFAULT_CAPS.filter((c) => host.includes(c)));
  for (const c of adds) if (c !== 'ALL') set.add(c);
  if (drops.includes('ALL')) set = new Set(adds.filter((c) => c !== 'ALL'));
  for (const c of drops) set.delete(c);
  return [...set];
}

/** linux.resources: deny all devices (runc re-allows its defaults), then the limits asked for. */
export function linuxResources(r: Resources, allDevices = false): Record<string, unknown> {
  const out: Record<string, unknown> = { devices: [{ allow: allDevices, access: 'rwm' }] };
  if (r.memoryBytes !== undefined) out.memory = { limit: r.memoryBytes };
  const cpu: Record<string, number> = {};
  if (r.cpus !== undefined) {
    cpu.quota = Math.round(r.cpus * CPU_PERIOD_US);
    cpu.period = CPU_PERIOD_US;
  }
  if (r.cpuShares !== undefined) cpu.shares = r.cpuShares;
  if (Object.keys(cpu).length) out.cpu = cpu;
  if (r.pidsLimit !== undefined && r.pidsLimit > 0) out.pids = { limit: r.pidsLimit };
  return out;
}

/** Capability names of a /proc/<pid>/status mask (CapBnd, CapEff...), in bit order. */
export function capsFromMask(hex: string): string[] {
  const mask = BigInt(`0x${hex.trim()}`);
  return ALL_CAPS.filter((_, bit) => (mask >> BigInt(bit)) & 1n);
}
