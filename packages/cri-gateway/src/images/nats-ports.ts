import { ImageApi, type PullImageRequest, type RemoveImageRequest, SnapshotApi } from '@berth/api';
import { client, collectAll } from '@berth/kit';
import type { NatsConnection } from 'nats';
import { CRI_NAMESPACE, type ImagePort, type SnapshotPort } from './ports.js';

/** The image-service of this node (host-local), in the CRI namespace, over NATS. */
export function natsImagePort(nc: NatsConnection, node: string): ImagePort {
  const images = client(nc, ImageApi, { node, namespace: CRI_NAMESPACE });
  return {
    pull: (req: PullImageRequest) => images.pull(req),
    list: () => collectAll(images.list, {}, 'images'),
    get: (name: string) => images.get({ name }),
    remove: (req: RemoveImageRequest) => images.remove(req),
    usage: () => images.usage({}),
  };
}

/** The snapshot-service of this node, in the CRI namespace, over NATS. */
export function natsSnapshotPort(nc: NatsConnection, node: string): SnapshotPort {
  const snapshots = client(nc, SnapshotApi, { node, namespace: CRI_NAMESPACE });
  return {
    list: (filters: string[]) => collectAll(snapshots.list, { filters }, 'snapshots'),
    usage: (key: string) => snapshots.usage({ key }),
  };
}
