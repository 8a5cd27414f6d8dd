import { Service } from '@berth/api';
import { endpoint, type ServiceContext } from '@berth/kit';
import { z } from 'zod';
import { runtimeVersion } from './runtime/version.js';

/** The NATS operations of the cri-gateway (besides `info`, which every service has). */
export function createEndpoints(_ctx: ServiceContext) {
  return {
    version: endpoint(z.object({}).passthrough(), async () => runtimeVersion(), `${Service.cri} CRI version`),
  };
}
