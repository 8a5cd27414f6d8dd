import {
  type ContentUsageReply,
  type ExportImageReply,
  type ExportImageRequest,
  type GcReply,
  type GetImageRequest,
  type ImageRecord,
  type ImageUnpackReply,
  type ImportImageReply,
  type ImportImageRequest,
  type ListImagesReply,
  type ListImagesRequest,
  type PullImageRequest,
  type PullReply,
  type PushImageReply,
  type PushImageRequest,
  type RemoveImageReply,
  type RemoveImageRequest,
  Service,
  type TagImageRequest,
} from '@berth/api';
import { makeClient } from '@berth/kit';
import type { NatsConnection } from 'nats';

/** Operations of the image-service with their request and reply types. */
export type ImageOps = {
  pull: { in: PullImageRequest; out: PullReply };
  list: { in: ListImagesRequest; out: ListImagesReply };
  get: { in: GetImageRequest; out: ImageRecord };
  unpack: { in: GetImageRequest; out: ImageUnpackReply };
  remove: { in: RemoveImageRequest; out: RemoveImageReply };
  tag: { in: TagImageRequest; out: ImageRecord };
  push: { in: PushImageRequest; out: PushImageReply };
  import: { in: ImportImageRequest; out: ImportImageReply };
  export: { in: ExportImageRequest; out: ExportImageReply };
  gc: { in: Record<string, never>; out: GcReply };
  usage: { in: Record<string, never>; out: ContentUsageReply };
};

/** Default timeouts: transfers are long (progress arrives as events), lookups short. */
export const imageTimeouts: { [K in keyof ImageOps]: number } = {
  pull: 3_600_000,
  list: 10_000,
  get: 10_000,
  unpack: 1_800_000,
  remove: 300_000,
  tag: 10_000,
  push: 3_600_000,
  import: 3_600_000,
  export: 3_600_000,
  gc: 300_000,
  usage: 60_000,
};

/** A typed client of one node's image-service. */
export function imageClient(nc: NatsConnection, node: string, namespace?: string) {
  return makeClient<ImageOps>(nc, Service.image, imageTimeouts, namespace ? { node, namespace } : { node });
}
