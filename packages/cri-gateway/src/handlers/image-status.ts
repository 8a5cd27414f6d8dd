import type { ImageRecord } from '@berth/api';
import { type CriImage, type CriImageSpec, toCriImages } from '../images/cri-image.js';
import { imageStatus as status, imageStatusNow as statusNow } from '../images/image-ops.js';
import { CriService } from '../proto.js';
import { ReplyMemo, responseEncoder, verboseInfo } from './encoded-reply.js';
import type { HandlerDeps } from './types.js';

/** CRI ImageStatusResponse, as on the wire. */
export interface ImageStatusResponse {
  image: CriImage | null;
  info: Record<string, string>;
}

// Per image record: the reply (and its bytes) for the same names and pinned set.
const replies = new ReplyMemo<ImageRecord, ImageStatusResponse>(
  responseEncoder(CriService.image, 'ImageStatus'),
);

// The variant the last read asked for: what a pull prepares.
let lastVerbose = false;

/**
 * ImageService/ImageStatus: the image, or `image` unset when it is not on the node (not an
 * error, the kubelet then pulls). With verbose, `info.info` holds berth's image record as JSON.
 * Answers at once, not in a promise, when the image view holds the image and nothing is being
 * refreshed (critest and the kubelet read an image right after its pull): no turns through the
 * microtask queue between the request and its reply.
 */
export function imageStatus(
  request: { image?: CriImageSpec | null; verbose?: boolean },
  deps: HandlerDeps,
): ImageStatusResponse | Promise<ImageStatusResponse> {
  const found = statusNow(deps, request.image?.image ?? '');
  return found ? reply(found, request, deps) : imageStatusLater(request, deps);
}

async function imageStatusLater(
  request: { image?: CriImageSpec | null; verbose?: boolean },
  deps: HandlerDeps,
): Promise<ImageStatusResponse> {
  const found = await status(deps, request.image?.image ?? '');
  return found ? reply(found, request, deps) : { image: null, info: {} };
}

/** The (kept) reply for an image found. */
function reply(
  found: { record: ImageRecord; names: ImageRecord[] },
  request: { verbose?: boolean },
  deps: HandlerDeps,
): ImageStatusResponse {
  const verbose = request.verbose === true;
  lastVerbose = verbose;
  return replies.get(found.record, verbose ? 'verbose' : '', [deps.pinned, ...found.names], () => ({
    // One id, so one image (an empty fold cannot happen: names holds the record at least).
    image: toCriImages(found.names, deps.pinned)[0] ?? null,
    info: verboseInfo(verbose, found.record),
  }));
}

/**
 * Builds and keeps the ImageStatus reply of image `spec` as it is now, in the variant the last
 * read asked for, so the read that follows its pull finds it (handlers/after-reply.ts).
 */
export async function prepareImageStatus(spec: string, deps: HandlerDeps): Promise<unknown> {
  return imageStatus({ image: { image: spec, annotations: {} }, verbose: lastVerbose }, deps);
}
