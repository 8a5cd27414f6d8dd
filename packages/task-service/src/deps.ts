import { ImageApi, ShimApi, SnapshotApi } from '@berth/api';
import { type Client, client, publishEvent } from '@berth/kit';
import type { NatsConnection } from 'nats';

/**
 * The node-local services the task-service drives, as the domain sees them: the typed clients of
 * their definitions (packages/api), addressed to the container's node. No operation, timeout or
 * reply type is restated here.
 */
export interface Deps {
  images(node: string, ns: string): Pick<Client<typeof ImageApi>, 'get'>;
  snapshots(node: string): Pick<Client<typeof SnapshotApi>, 'prepare' | 'mounts' | 'remove'>;
  shim(node: string, ns: string): Client<typeof ShimApi>;
  publish(topic: string, ns: string, event: unknown): void;
}

/** Deps over NATS: every call goes to the service instance of the container's node. */
export function natsDeps(nc: NatsConnection): Deps {
  // One client object per (service, node, namespace): they are small and reused by every request.
  const cache = new Map<string, unknown>();
  const memo = <T>(key: string, make: () => T): T => {
    let c = cache.get(key) as T | undefined;
    if (!c) {
      c = make();
      cache.set(key, c);
    }
    return c;
  };
  return {
    images: (node, ns) => memo(`i|${node}|${ns}`, () => client(nc, ImageApi, { node, namespace: ns })),
    snapshots: (node) => memo(`s|${node}`, () => client(nc, SnapshotApi, { node })),
    shim: (node, ns) => memo(`h|${node}|${ns}`, () => client(nc, ShimApi, { node, namespace: ns })),
    publish: (topic, ns, event) => publishEvent(nc, topic, ns, event),
  };
}
