// A stand-in image-service for snapshot-service tests: only `chain-roots`, served over real NATS
// with the real contract (reply checked), answering with the roots the test sets.
import { defineService, ImageApi, Scope, Service } from '@berth/api';
import { serveStandIn } from '@berth/kit/stand-in';
import type { NatsConnection } from 'nats';

/** The part of the image-service's contract the snapshot-service calls (GC's image roots). */
export const ImageStandInApi = defineService({
  name: Service.image,
  scope: Scope.host,
  ops: { 'chain-roots': ImageApi.ops['chain-roots'] },
});

/** A served stand-in: `roots` are the top chainIDs it reports, changed freely by tests. */
export interface ImageStandIn {
  roots: string[];
  /** Snapshot keys clients' leases hold, reported with the roots. */
  leased: string[];
  stop(): Promise<void>;
}

/** Serves the stand-in image-service of `node` on `nc`. */
export async function serveImageStandIn(nc: NatsConnection, node: string): Promise<ImageStandIn> {
  const state: ImageStandIn = { roots: [], leased: [], stop: async () => undefined };
  state.stop = await serveStandIn(nc, ImageStandInApi, node, {
    'chain-roots': async () => ({ chainIds: [...state.roots], leasedSnapshots: [...state.leased] }),
  });
  return state;
}
