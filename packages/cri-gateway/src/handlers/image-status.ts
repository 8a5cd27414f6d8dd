import type { CriImage, CriImageSpec } from '../images/cri-image.js';
import { imageStatus as status } from '../images/image-ops.js';
import type { HandlerDeps } from './types.js';

/** CRI ImageStatusResponse, as on the wire. */
export interface ImageStatusResponse {
  image: CriImage | null;
  info: Record<string, string>;
}

/**
 * ImageService/ImageStatus: the image, or `image` unset when it is not on the node (not an
 * error, the kubelet then pulls). With verbose, `info.info` holds berth's image record as JSON.
 */
export async function imageStatus(
  request: { image?: CriImageSpec | null; verbose?: boolean },
  deps: HandlerDeps,
): Promise<ImageStatusResponse> {
  const found = await status(deps, request.image?.image ?? '');
  if (!found) return { image: null, info: {} };
  return {
    image: found.image,
    info: request.verbose ? { info: JSON.stringify(found.record) } : {},
  };
}
