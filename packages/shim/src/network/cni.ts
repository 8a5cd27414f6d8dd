import { isIPv4 } from 'node:net';
import { BerthError, type ShimBandwidth, type ShimCniDns, type ShimPodIdentity } from '@berth/api';
import type { CniConfList } from './cni-config.js';
import { CniCommand, execPlugin, findPlugin } from './cni-exec.js';

/** A port published from the host into a pod (the portmap plugin's `portMappings` capability). */
export interface PortMapping {
  hostPort: number;
  containerPort: number;
  protocol: 'tcp' | 'udp' | 'sctp';
  /** Host address to bind; empty or absent for every address. */
  hostIP?: string;
}

/** Runtime arguments of one attachment: what CNI calls the container and what capabilities receive. */
export interface Attachment {
  containerId: string;
  /** Empty on a DEL whose namespace is gone: plugins then only release what lives outside it (IPAM). */
  netns: string;
  ifname: string;
  portMappings?: PortMapping[];
  /** The Kubernetes pod attached: its CNI_ARGS (see cniArgs). */
  pod?: ShimPodIdentity;
  /** The `bandwidth` capability. */
  bandwidth?: ShimBandwidth;
  /** The `dns` capability. */
  dns?: ShimCniDns;
}

/**
 * CNI_ARGS of a Kubernetes pod's attachment, as containerd's CRI passes them (toCNILabels):
 * IgnoreUnknown first, so a plugin that knows none of the K8S_* keys does not fail on them.
 */
export function cniArgs(pod: ShimPodIdentity | undefined): string | undefined {
  if (!pod) return undefined;
  return [
    ['IgnoreUnknown', '1'],
    ['K8S_POD_NAMESPACE', pod.namespace],
    ['K8S_POD_NAME', pod.name],
    ['K8S_POD_INFRA_CONTAINER_ID', pod.sandboxId],
    ['K8S_POD_UID', pod.uid],
  ]
    .map(([k, v]) => `${k}=${v}`)
    .join(';');
}

/** How plugins are found and how long each may run. */
export interface ChainOptions {
  pluginDirs: string[];
  timeoutMs: number;
}

/**
 * Runs a network configuration list as libcni does: ADD plugin by plugin in order, each receiving the
 * previous result as `prevResult`; DEL in reverse order with the cached ADD result; CHECK in order
 * with it. Every plugin gets the list's `name` and `cniVersion`, a `runtimeConfig` carrying only
 * the capabilities it declares (portMappings, bandwidth, dns), and the pod's CNI_ARGS.
 */
export async function addChain(
  list: CniConfList,
  att: Attachment,
  opts: ChainOptions,
): Promise<Record<string, unknown> | undefined> {
  // Every binary is found before the first runs: a missing one then leaves nothing to undo.
  for (const plugin of list.plugins) await findPlugin(plugin.type, opts.pluginDirs);
  let prev: Record<string, unknown> | undefined;
  for (const plugin of list.plugins) {
    prev = await execPlugin({
      ...callBase(list, att, opts, plugin.type),
      command: CniCommand.ADD,
      config: pluginConfig(list, plugin, att, prev),
    });
  }
  return prev;
}

/**
 * Deletes an attachment, last plugin first; see addChain. Every plugin's DEL runs even when one
 * fails (the bridge must still release the lease when portmap cannot), then the first error is
 * thrown. Safe to repeat: plugins' DEL is idempotent.
 */
export async function delChain(
  list: CniConfList,
  att: Attachment,
  opts: ChainOptions,
  cached: Record<string, unknown> | undefined,
): Promise<void> {
  const errors: Error[] = [];
  for (const plugin of [...list.plugins].reverse()) {
    await execPlugin({
      ...callBase(list, att, opts, plugin.type),
      command: CniCommand.DEL,
      config: pluginConfig(list, plugin, att, cached),
    }).catch((err: Error) => errors.push(err));
  }
  const [first, ...rest] = errors;
  if (first) {
    const more = rest.length ? ` (and ${rest.length} more: ${rest.map((e) => e.message).join('; ')})` : '';
    throw first instanceof BerthError
      ? new BerthError(first.code, first.message + more, { cause: first })
      : first;
  }
}

/** Asks every plugin whether the attachment is still as ADD made it; throws what the first one finds. */
export async function checkChain(
  list: CniConfList,
  att: Attachment,
  opts: ChainOptions,
  cached: Record<string, unknown>,
): Promise<void> {
  if (list.disableCheck) return;
  for (const plugin of list.plugins) {
    await execPlugin({
      ...callBase(list, att, opts, plugin.type),
      command: CniCommand.CHECK,
      config: pluginConfig(list, plugin, att, cached),
    });
  }
}

function callBase(list: CniConfList, att: Attachment, opts: ChainOptions, type: string) {
  return {
    type,
    containerId: att.containerId,
    netns: att.netns,
    ifname: att.ifname,
    args: cniArgs(att.pod),
    pluginDirs: opts.pluginDirs,
    timeoutMs: opts.timeoutMs,
    network: list.name,
  };
}

/** The config one plugin reads on stdin. */
function pluginConfig(
  list: CniConfList,
  plugin: CniConfList['plugins'][number],
  att: Attachment,
  prevResult: Record<string, unknown> | undefined,
): Record<string, unknown> {
  const conf: Record<string, unknown> = { ...plugin, name: list.name, cniVersion: list.cniVersion };
  if (prevResult) conf.prevResult = prevResult;
  const runtime: Record<string, unknown> = {};
  const caps = plugin.capabilities ?? {};
  if (caps.portMappings && att.portMappings?.length) runtime.portMappings = att.portMappings;
  if (caps.bandwidth && att.bandwidth && Object.keys(att.bandwidth).length) runtime.bandwidth = att.bandwidth;
  if (caps.dns && att.dns) runtime.dns = att.dns;
  if (Object.keys(runtime).length) conf.runtimeConfig = runtime;
  return conf;
}

/** One address a pod got. */
export interface PodIp {
  /** CIDR notation, e.g. 10.88.0.2/16. */
  address: string;
  version: 4 | 6;
  gateway?: string;
}

/** The parts of a CNI result (0.3.0 and later) a runtime uses: the pod's addresses on its interface. */
export interface AttachmentInfo {
  ips: PodIp[];
  /** First IPv4 gateway, else the first gateway. */
  gateway?: string;
  interface: string;
  mac?: string;
}

/** Reads a CNI result: the addresses assigned to `ifname` inside the namespace (or all when none names it). */
export function parseResult(result: Record<string, unknown> | undefined, ifname: string): AttachmentInfo {
  const interfaces = Array.isArray(result?.interfaces)
    ? (result.interfaces as { name?: string; mac?: string; sandbox?: string }[])
    : [];
  const idx = interfaces.findIndex((i) => i.name === ifname && i.sandbox);
  const ips: PodIp[] = [];
  for (const ip of Array.isArray(result?.ips)
    ? (result.ips as { address?: unknown; gateway?: unknown; interface?: unknown }[])
    : []) {
    if (typeof ip.address !== 'string') continue;
    if (idx >= 0 && typeof ip.interface === 'number' && ip.interface !== idx) continue;
    const bare = ip.address.split('/')[0] ?? '';
    ips.push({
      address: ip.address,
      version: isIPv4(bare) ? 4 : 6,
      ...(typeof ip.gateway === 'string' ? { gateway: ip.gateway } : {}),
    });
  }
  const gateway = (ips.find((i) => i.version === 4 && i.gateway) ?? ips.find((i) => i.gateway))?.gateway;
  const mac = idx >= 0 ? interfaces[idx]?.mac : undefined;
  return { ips, interface: ifname, ...(gateway ? { gateway } : {}), ...(mac ? { mac } : {}) };
}
