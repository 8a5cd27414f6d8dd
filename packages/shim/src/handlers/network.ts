import {
  BerthError,
  Code,
  type ShimNetworkListReply,
  ShimNetworkSetupRequest,
  ShimNetworkTeardownRequest,
  ShimPodRef,
} from '@berth/api';
import { endpoint } from '@berth/kit';
import { z } from 'zod';
import type { NetworkManager } from '../network/manager.js';

/** Endpoints of pod networking on this node: setup, teardown, status, list (CNI, see network/). */
export function networkEndpoints(network: NetworkManager) {
  return {
    'network-setup': endpoint(
      ShimNetworkSetupRequest,
      (req) => network.setup(req.podId, { portMappings: req.portMappings }),
      'pinned netns + CNI ADD of the default network; idempotent',
    ),
    'network-teardown': endpoint(
      ShimNetworkTeardownRequest,
      (req) => network.teardown(req.podId, { force: req.force }),
      'CNI DEL, then remove the netns and record; idempotent',
    ),
    'network-status': endpoint(
      ShimPodRef,
      async (req) => {
        const net = await network.status(req.podId);
        if (!net) throw new BerthError(Code.NOT_FOUND, `pod "${req.podId}" has no network on this node`);
        return net;
      },
      "a pod's netns and addresses",
    ),
    'network-list': endpoint(
      z.object({}),
      async (): Promise<ShimNetworkListReply> => ({
        networks: await network.listNetworks(),
        pods: await network.list(),
      }),
      'CNI networks of the conf dir and the pods attached',
    ),
  };
}
