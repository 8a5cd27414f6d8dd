import { join } from 'node:path';
import {
  type AppArmorRequest,
  CniArgValue,
  type CreateContainerRequest,
  effectiveAppArmor,
  Hostname,
  type SeccompRequest,
  type ShimBandwidth,
  ShimCniDns,
  seccompFromCri,
  seccompFromCriPath,
} from '@berth/api';
import { appArmorOf } from './apparmor.js';
import { podBandwidth } from './bandwidth.js';
import { CriKind, CriLabel, type NamespaceOptions, NsMode, type SandboxMeta, sandboxName } from './meta.js';
import type { PortMapping } from './ports.js';
import {
  absPath,
  int,
  invalid,
  message,
  namespaceOptions,
  required,
  runAsUser,
  stringList,
  stringMap,
  supplementalGroups,
} from './validate.js';

/** A PodSandboxConfig, checked: what RunPodSandbox needs before it touches anything. */
export interface PodConfig {
  metadata: SandboxMeta['metadata'];
  labels: Record<string, string>;
  annotations: Record<string, string>;
  /** The pod's host name ("": the node's, as containerd; see PodRuntime). */
  hostname: string;
  logDirectory: string;
  dns?: { servers: string[]; searches: string[]; options: string[] };
  portMappings: PortMapping[];
  /** The CNI bandwidth of a pod with its own network, from its annotations (see podBandwidth). */
  bandwidth?: ShimBandwidth;
  cgroupParent: string;
  sysctls: Record<string, string>;
  namespaceOptions: NamespaceOptions;
  /**
   * The pause container's seccomp filter, from the pod's security context as containerd reads it
   * (unset: none; a privileged pod: none).
   */
  seccomp: SeccompRequest;
  /** The pause container's AppArmor profile, from the pod's security context (privileged: none). */
  apparmor: AppArmorRequest;
  /** The pause process's user (`uid[:gid]`) and supplemental groups (its rootfs is always read-only). */
  user?: string;
  groups: number[];
}

const PROTOCOLS = new Set(['TCP', 'UDP', 'SCTP']);

/** Checks a CRI PodSandboxConfig; bad input throws INVALID_ARGUMENT naming the field. */
export function parsePodConfig(raw: unknown): PodConfig {
  const config = message(raw, 'config');
  if (!config) throw invalid('config', 'is required');
  const md = message(config.metadata, 'config.metadata');
  if (!md) throw invalid('config.metadata', 'is required');
  const metadata = {
    name: required(md.name, 'config.metadata.name'),
    uid: required(md.uid, 'config.metadata.uid'),
    namespace: required(md.namespace, 'config.metadata.namespace'),
    attempt: int(md.attempt, 'config.metadata.attempt'),
  };
  const hostname = typeof config.hostname === 'string' ? config.hostname : '';
  if (hostname !== '' && !Hostname.safeParse(hostname).success) {
    throw invalid('config.hostname', `is not a valid host name: "${hostname.slice(0, 80)}"`);
  }
  const dnsMsg = message(config.dns_config, 'config.dns_config');
  const dns = dnsMsg
    ? {
        servers: stringList(dnsMsg.servers, 'config.dns_config.servers'),
        searches: stringList(dnsMsg.searches, 'config.dns_config.searches'),
        options: stringList(dnsMsg.options, 'config.dns_config.options'),
      }
    : undefined;
  const ports = Array.isArray(config.port_mappings) ? config.port_mappings : [];
  const portMappings = ports.map((p: unknown, i: number): PortMapping => {
    const m = message(p, `config.port_mappings[${i}]`) ?? {};
    const protocol = typeof m.protocol === 'string' ? m.protocol : 'TCP';
    if (!PROTOCOLS.has(protocol))
      throw invalid(`config.port_mappings[${i}].protocol`, `is unknown: ${protocol}`);
    const port = (v: unknown, f: string) => {
      const n = int(v, `config.port_mappings[${i}].${f}`);
      if (n < 0 || n > 65535) throw invalid(`config.port_mappings[${i}].${f}`, `is not a port: ${n}`);
      return n;
    };
    return {
      protocol: protocol as PortMapping['protocol'],
      containerPort: port(m.container_port, 'container_port'),
      hostPort: port(m.host_port, 'host_port'),
      hostIp: typeof m.host_ip === 'string' ? m.host_ip : '',
    };
  });
  const linux = message(config.linux, 'config.linux') ?? {};
  const scField = 'config.linux.security_context';
  const sc = message(linux.security_context, scField) ?? {};
  const apparmor = appArmorOf(sc, scField);
  const user = runAsUser(sc, scField);
  const namespaces = namespaceOptions(sc.namespace_options, `${scField}.namespace_options`);
  if (namespaces.network === NsMode.TARGET || namespaces.network === NsMode.CONTAINER) {
    throw invalid(`${scField}.namespace_options.network`, 'must be POD or NODE');
  }
  if (namespaces.ipc === NsMode.TARGET || namespaces.pid === NsMode.TARGET) {
    throw invalid(`${scField}.namespace_options`, 'TARGET is for containers, not pods');
  }
  const sysctls = stringMap(linux.sysctls, 'config.linux.sysctls');
  if (namespaces.network === NsMode.NODE && Object.keys(sysctls).some((k) => k.startsWith('net.'))) {
    throw invalid('config.linux.sysctls', 'cannot set net.* sysctls in the host network');
  }
  const annotations = stringMap(config.annotations, 'config.annotations');
  // What the CNI plugins get, read and checked only for a pod with a network of its own, as
  // containerd reads the bandwidth annotations only to set one up.
  const ownNetwork = namespaces.network !== NsMode.NODE;
  if (ownNetwork) checkCniInputs(metadata, dns);
  const bandwidth = ownNetwork ? podBandwidth(annotations) : undefined;
  return {
    metadata,
    labels: stringMap(config.labels, 'config.labels'),
    annotations,
    hostname,
    logDirectory: absPath(config.log_directory, 'config.log_directory'),
    ...(dns ? { dns } : {}),
    portMappings,
    ...(bandwidth ? { bandwidth } : {}),
    cgroupParent: cgroupParentOf(linux.cgroup_parent),
    sysctls,
    namespaceOptions: namespaces,
    seccomp: sc.privileged === true ? { mode: 'unconfined' } : seccompOf(sc, scField),
    apparmor: effectiveAppArmor(apparmor, sc.privileged === true),
    ...(user ? { user } : {}),
    groups: supplementalGroups(sc, scField),
  };
}

/**
 * What a pod with a network of its own hands its CNI plugins (CNI_ARGS, the dns capability),
 * checked before anything is made: INVALID_ARGUMENT naming the CRI field.
 */
function checkCniInputs(
  metadata: { name: string; uid: string; namespace: string },
  dns: { servers: string[]; searches: string[]; options: string[] } | undefined,
): void {
  for (const k of ['name', 'uid', 'namespace'] as const) {
    const r = CniArgValue.safeParse(metadata[k]);
    if (!r.success) {
      throw invalid(
        `config.metadata.${k}`,
        `"${metadata[k].slice(0, 80)}" cannot be passed to the CNI plugins: ${r.error.issues[0]?.message ?? 'invalid'}`,
      );
    }
  }
  const r = dns ? ShimCniDns.safeParse(dns) : undefined;
  if (r && !r.success) {
    const issue = r.error.issues[0];
    const at = issue?.path.length ? `.${issue.path.join('.').replace(/\.(\d+)/g, '[$1]')}` : '';
    throw invalid(`config.dns_config${at}`, issue?.message ?? 'is invalid');
  }
}

/**
 * The pod's cgroup parent, a cgroupfs path. A systemd-driver kubelet's slice
 * (`kubepods-burstable-pod<uid>.slice`) is INVALID_ARGUMENT saying how to configure the kubelet:
 * berth drives runc with cgroupfs, and kubelets before 1.28 do not ask RuntimeConfig which.
 */
function cgroupParentOf(v: unknown): string {
  const field = 'config.linux.cgroup_parent';
  if (typeof v === 'string' && v !== '' && !v.startsWith('/')) {
    throw invalid(
      field,
      `"${v.slice(0, 200)}" is not a cgroupfs path (a systemd slice?): berth uses the cgroupfs ` +
        'cgroup driver, so the kubelet must be configured with `cgroupDriver: cgroupfs` ' +
        '(--cgroup-driver=cgroupfs)',
    );
  }
  return absPath(v, field);
}

/**
 * The cgroups path of a pod's container or pause under the pod's cgroup parent (undefined without
 * one: berth's default). The leaf is the CRI id, where containerd's CRI puts it with cgroupfs:
 * node agents (cAdvisor, the kubelet's stats) take a cgroup's last element as its container's id.
 */
export function cgroupsPathOf(parent: string, id: string): string | undefined {
  return parent ? `${parent.replace(/\/+$/, '')}/${id}` : undefined;
}

/**
 * The task-service request of a pod's pause container: its own ipc (and pid unless the node's)
 * namespaces, the pod's network namespace and its own uts (in the host network the host's both),
 * the pod's host name, DNS and sysctls, and the pod's /dev/shm: a tmpfs on the node its containers
 * bind too (see podShm), or in the node's IPC namespace the node's own /dev/shm, read-only as
 * containerd binds it. It is made under `opts.id`, the sandbox id the gateway chose, which also
 * names its cgroup under the pod's cgroup parent.
 */
export function sandboxRequest(
  pod: PodConfig,
  opts: { id: string; image: string; meta: SandboxMeta; netnsPath?: string },
): CreateContainerRequest {
  const name = sandboxName(pod.metadata);
  const host = pod.namespaceOptions.network === NsMode.NODE;
  const cgroupsPath = cgroupsPathOf(pod.cgroupParent, opts.id);
  const dns =
    pod.dns && (pod.dns.servers.length || pod.dns.searches.length || pod.dns.options.length)
      ? pod.dns
      : undefined;
  return {
    id: opts.id,
    image: opts.image,
    name,
    ...(host ? { network: 'host' as const } : { network: opts.netnsPath ?? 'none' }),
    // In the host network the node's name is the pod's (the shim writes it).
    ...(!host && opts.meta.hostname ? { hostname: opts.meta.hostname } : {}),
    namespaces: {
      pid: pod.namespaceOptions.pid === NsMode.NODE ? 'host' : 'private',
      ipc: pod.namespaceOptions.ipc === NsMode.NODE ? 'host' : 'private',
      // As containerd: a pod in the node's network is in the node's UTS namespace too, and so
      // has the node's host name (its own would rename the node).
      uts: host ? 'host' : 'private',
    },
    ...(pod.namespaceOptions.ipc === NsMode.NODE
      ? { mounts: [{ source: NODE_SHM, destination: NODE_SHM, readonly: true }] }
      : { shm: 'shareable' as const }),
    ...(dns ? { dns } : {}),
    ...(Object.keys(pod.sysctls).length ? { sysctls: pod.sysctls } : {}),
    ...(cgroupsPath ? { cgroupsPath } : {}),
    // Without it the task-service would give the pause berth's default filter: the pod's is
    // containerd's choice for its sandbox container too.
    seccomp: pod.seccomp,
    apparmor: pod.apparmor,
    // The pod's user and groups are the pause's too (containerd's sandbox spec).
    ...(pod.user ? { user: pod.user } : {}),
    ...(pod.groups.length ? { additionalGids: pod.groups } : {}),
    // As containerd's sandbox spec, whatever the pod asks: the pause only sleeps, on a read-only
    // rootfs, unable to gain privileges, with the least CPU weight in the pod's cgroup.
    readonlyRootfs: true,
    noNewPrivileges: true,
    resources: { cpuShares: SANDBOX_CPU_SHARES },
    labels: { [CriLabel.kind]: CriKind.sandbox, [CriLabel.meta]: JSON.stringify(opts.meta) },
  };
}

/** The pause container's cpu shares (containerd's DefaultSandboxCPUshares). */
const SANDBOX_CPU_SHARES = 2;

/** The node's /dev/shm, the /dev/shm of a pod in the node's IPC namespace. */
const NODE_SHM = '/dev/shm';

/**
 * The /dev/shm of a pod's containers on the node, as containerd's CRI shares it: the pause
 * container's shareable tmpfs (`shm` in its files directory, made by its shim), or the node's own
 * in the node's IPC namespace. POSIX shared memory one container makes there the others see.
 */
export function podShm(filesDir: string, ipc: NsMode): string {
  return ipc === NsMode.NODE ? NODE_SHM : join(filesDir, 'shm');
}

/**
 * The seccomp request of a pod's or container's security context, as containerd reads it: the
 * SecurityProfile when set (its zero value is RuntimeDefault), else the deprecated
 * seccomp_profile_path ("" and "unconfined" mean none). A Localhost profile is read on the node.
 */
export function seccompOf(sc: Record<string, unknown>, field: string): SeccompRequest {
  const p = message(sc.seccomp, `${field}.seccomp`);
  if (p) {
    return seccompFromCri({
      profileType: typeof p.profile_type === 'string' ? p.profile_type : 'RuntimeDefault',
      localhostRef: typeof p.localhost_ref === 'string' ? p.localhost_ref : '',
    });
  }
  return seccompFromCriPath(typeof sc.seccomp_profile_path === 'string' ? sc.seccomp_profile_path : '');
}
