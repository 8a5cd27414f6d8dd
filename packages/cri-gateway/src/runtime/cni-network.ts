import { join } from 'node:path';
import {
  BerthError,
  Code,
  podAddresses,
  type ShimNetworkListReply,
  type ShimNetworkSetupRequest,
  type ShimPodCidrReply,
  type ShimPodNetwork,
  type ShimPortMapping,
  toBerthError,
} from '@berth/api';
import type {
  NetworkReadiness,
  PodCidrOutcome,
  PodNetwork,
  PodNetworkResult,
  PodNetworkSetup,
  PortMapping,
} from './ports.js';

/** Prefix of the CRI pods' network keys: the shim also holds `berth run` containers' networks. */
export const CRI_NET_PREFIX = 'cri-';
const CRI_KEY = /^cri-[0-9a-f]{16}$/;

/** True when a shim pod id is a CRI pod's network key (the gateway's to collect). */
export function isCriNetKey(podId: string): boolean {
  return CRI_KEY.test(podId);
}

function checkKey(podKey: string): void {
  if (!isCriNetKey(podKey)) {
    throw new BerthError(Code.INVALID_ARGUMENT, `invalid CRI pod network key "${podKey}"`);
  }
}

/**
 * What CniPodNetwork asks the node's shim (ShimApi network-* ops); the gateway passes one over
 * NATS, addressed to its own node.
 */
export interface ShimNetworkPort {
  netns(podId: string): Promise<string>;
  setup(podId: string, req: Omit<ShimNetworkSetupRequest, 'podId'>): Promise<ShimPodNetwork>;
  teardown(podId: string): Promise<void>;
  list(): Promise<ShimNetworkListReply>;
  podCidr(cidrs: string[]): Promise<ShimPodCidrReply>;
}

/**
 * CRI port mappings as the CNI portmap plugin takes them. A mapping without a host port publishes
 * nothing (the kubelet sends container ports for information), so it is left out as containerd does.
 */
export function toShimPortMappings(ports: PortMapping[]): ShimPortMapping[] {
  return ports
    .filter((p) => p.hostPort > 0)
    .map((p) => ({
      hostPort: p.hostPort,
      containerPort: p.containerPort,
      protocol: p.protocol.toLowerCase() as ShimPortMapping['protocol'],
      ...(p.hostIp ? { hostIP: p.hostIp } : {}),
    }));
}

/** Whether a network-list reply has a default network pods can join, and what is wrong if not. */
export function readinessOf(reply: ShimNetworkListReply): NetworkReadiness {
  const first = reply.networks.find((n) => n.default) ?? reply.networks[0];
  if (!first) return { ready: false, message: 'no CNI network configuration on this node' };
  if (first.error) {
    return { ready: false, message: `CNI network configuration ${first.file} is broken: ${first.error}` };
  }
  if (first.plugins.length === 0) {
    return { ready: false, message: `CNI network "${first.name}" (${first.file}) has no plugins` };
  }
  return { ready: true, message: '' };
}

/**
 * The pod network over the node's shim: the shim pins each pod's network namespace and runs the
 * CNI plugins (one owner of netns state and leases); this class only maps CRI to the shim's ops.
 */
export class CniPodNetwork implements PodNetwork {
  /** `netnsDir`: where the node's shim pins pods' namespaces (layout.run.netns). */
  constructor(
    private readonly shim: ShimNetworkPort,
    private readonly netnsDir: string,
  ) {}

  netnsPath(podKey: string): string {
    checkKey(podKey);
    return join(this.netnsDir, podKey);
  }

  async setup(podKey: string, opts: PodNetworkSetup): Promise<PodNetworkResult> {
    checkKey(podKey);
    const net = await this.shim.setup(podKey, {
      portMappings: toShimPortMappings(opts.portMappings),
      pod: opts.pod,
      ...(opts.bandwidth ? { bandwidth: opts.bandwidth } : {}),
      ...(opts.dns ? { dns: opts.dns } : {}),
    });
    return { netnsPath: net.netnsPath, ips: podAddresses(net.ips) };
  }

  async teardown(podKey: string): Promise<void> {
    await this.shim.teardown(podKey);
  }

  async list(): Promise<string[]> {
    return (await this.shim.list()).pods.map((p) => p.podId).filter(isCriNetKey);
  }

  async usePodCidrs(cidrs: string[]): Promise<PodCidrOutcome> {
    return this.shim.podCidr(cidrs);
  }

  async readiness(): Promise<NetworkReadiness> {
    try {
      return readinessOf(await this.shim.list());
    } catch (err) {
      return { ready: false, message: `cannot list the node's CNI networks: ${toBerthError(err).message}` };
    }
  }
}
