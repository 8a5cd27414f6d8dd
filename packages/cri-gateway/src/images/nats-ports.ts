import {
  type ContentUsageReply,
  type ImageRecord,
  type ListImagesReply,
  type ListSnapshotsReply,
  type PullImageRequest,
  type PullReply,
  type RemoveImageReply,
  type RemoveImageRequest,
  Service,
  type SnapshotUsageReply,
} from '@berth/api';
import { call } from '@berth/kit';
import type { NatsConnection } from 'nats';
import { CRI_NAMESPACE, type ImagePort, type SnapshotPort } from './ports.js';

/** Per-operation timeouts, as the services' own clients set them: a pull with its unpack is long. */
const TIMEOUTS = {
  pull: 3_600_000,
  list: 10_000,
  get: 10_000,
  remove: 300_000,
  usage: 60_000,
  snapshotList: 30_000,
  snapshotUsage: 120_000,
} as const;

/** The image-service of this node (host-local), in the CRI namespace, over NATS. */
export function natsImagePort(nc: NatsConnection, node: string): ImagePort {
  const opts = (timeoutMs: number) => ({ node, namespace: CRI_NAMESPACE, timeoutMs });
  return {
    pull: (req: PullImageRequest) => call<PullReply>(nc, Service.image, 'pull', req, opts(TIMEOUTS.pull)),
    list: async () =>
      (await call<ListImagesReply>(nc, Service.image, 'list', {}, opts(TIMEOUTS.list))).images,
    get: (name: string) => call<ImageRecord>(nc, Service.image, 'get', { name }, opts(TIMEOUTS.get)),
    remove: (req: RemoveImageRequest) =>
      call<RemoveImageReply>(nc, Service.image, 'remove', req, opts(TIMEOUTS.remove)),
    usage: () => call<ContentUsageReply>(nc, Service.image, 'usage', {}, opts(TIMEOUTS.usage)),
  };
}

/** The snapshot-service of this node, in the CRI namespace, over NATS. */
export function natsSnapshotPort(nc: NatsConnection, node: string): SnapshotPort {
  const opts = (timeoutMs: number) => ({ node, namespace: CRI_NAMESPACE, timeoutMs });
  return {
    list: async (filters: string[]) =>
      (await call<ListSnapshotsReply>(nc, Service.snapshot, 'list', { filters }, opts(TIMEOUTS.snapshotList)))
        .snapshots,
    usage: (key: string) =>
      call<SnapshotUsageReply>(nc, Service.snapshot, 'usage', { key }, opts(TIMEOUTS.snapshotUsage)),
  };
}
