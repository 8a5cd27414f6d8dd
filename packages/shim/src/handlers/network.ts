import { BerthError, Code, type ShimApi } from '@berth/api';
import type { Handlers } from '@berth/kit';
import type { NetworkManager } from '../network/manager.js';

/** Handlers of pod networking on this node: netns, setup, teardown, status, list (CNI, see network/). */
export function networkHandlers(
  network: NetworkManager,
): Pick<
  Handlers<typeof ShimApi>,
  | 'network-netns'
  | 'network-setup'
  | 'network-teardown'
  | 'network-status'
  | 'network-list'
  | 'network-pod-cidr'
> {
  return {
    'network-netns': async (req) => ({ podId: req.podId, netnsPath: await network.prepare(req.podId) }),
    'network-setup': (req) =>
      network.setup(req.podId, {
        portMappings: req.portMappings,
        ...(req.pod ? { pod: req.pod } : {}),
        ...(req.bandwidth ? { bandwidth: req.bandwidth } : {}),
        ...(req.dns ? { dns: req.dns } : {}),
      }),
    'network-teardown': (req) => network.teardown(req.podId, { force: req.force }),
    'network-status': async (req) => {
      const net = await network.status(req.podId);
      if (!net) throw new BerthError(Code.NOT_FOUND, `pod "${req.podId}" has no network on this node`);
      return net;
    },
    'network-list': async () => ({ networks: await network.listNetworks(), pods: await network.list() }),
    'network-pod-cidr': (req) => network.setPodCidr(req.cidrs),
  };
}
