import type { ImageRecord } from '@berth/api';
import type { CriImage, CriImageSpec } from '../images/cri-image.js';
import { toCriImages } from '../images/cri-image.js';
import { listImages as list, listRecords, listRecordsNow } from '../images/image-ops.js';
import { CriService } from '../proto.js';
import { ReplyMemo, responseEncoder } from './encoded-reply.js';
import type { HandlerDeps } from './types.js';

/** CRI ListImagesRequest / StreamImagesRequest, as on the wire. */
export interface ListImagesRequest {
  filter?: { image?: CriImageSpec | null } | null;
}

// Per image port and filter: the reply (and its bytes) for the same records and pinned set.
const replies = new ReplyMemo<object, { images: CriImage[] }>(
  responseEncoder(CriService.image, 'ListImages'),
);

/**
 * ImageService/ListImages: the node's images in the CRI namespace, one per id. Answers at once,
 * not in a promise, when the image view holds them and nothing is being refreshed.
 */
export function listImages(
  request: ListImagesRequest,
  deps: HandlerDeps,
): { images: CriImage[] } | Promise<{ images: CriImage[] }> {
  const filter = request.filter?.image?.image || undefined;
  const now = listRecordsNow(deps, filter);
  return now ? reply(now, filter, deps) : listImagesLater(filter, deps);
}

async function listImagesLater(
  filter: string | undefined,
  deps: HandlerDeps,
): Promise<{ images: CriImage[] }> {
  return reply(await listRecords(deps, filter), filter, deps);
}

/** The (kept) reply for these records. */
function reply(
  records: readonly ImageRecord[],
  filter: string | undefined,
  deps: HandlerDeps,
): { images: CriImage[] } {
  return replies.get(deps.images, filter ?? '', [deps.pinned, ...records], () => ({
    images: toCriImages(records, deps.pinned),
  }));
}

/** How many images one StreamImages message carries. */
export const STREAM_CHUNK = 100;

/**
 * ImageService/StreamImages: the same list as ListImages in messages of at most STREAM_CHUNK
 * images (each non-empty, as the CRI requires: no images means no message, then EOF).
 */
export async function* streamImages(
  request: ListImagesRequest,
  deps: HandlerDeps,
): AsyncIterable<{ images: CriImage[] }> {
  const images = await list(deps, request.filter?.image?.image || undefined);
  for (let i = 0; i < images.length; i += STREAM_CHUNK) {
    yield { images: images.slice(i, i + STREAM_CHUNK) };
  }
}
