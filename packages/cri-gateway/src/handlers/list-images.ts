import type { CriImage, CriImageSpec } from '../images/cri-image.js';
import { listImages as list } from '../images/image-ops.js';
import type { HandlerDeps } from './types.js';

/** CRI ListImagesRequest / StreamImagesRequest, as on the wire. */
export interface ListImagesRequest {
  filter?: { image?: CriImageSpec | null } | null;
}

/** ImageService/ListImages: the node's images in the CRI namespace, one per id. */
export async function listImages(
  request: ListImagesRequest,
  deps: HandlerDeps,
): Promise<{ images: CriImage[] }> {
  return { images: await list(deps, request.filter?.image?.image || undefined) };
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
