import { type CriVersionReply, type InfoReply, Service } from '@berth/api';
import { makeClient } from '@berth/kit';
import type { NatsConnection } from 'nats';

/** Typed NATS client of the cri-gateway's own operations (the CRI itself is the gRPC socket). */
export function criGatewayClient(nc: NatsConnection) {
  return makeClient<{
    info: { in: Record<string, never>; out: InfoReply };
    version: { in: Record<string, never>; out: CriVersionReply };
  }>(nc, Service.cri, { info: 2000, version: 2000 });
}
