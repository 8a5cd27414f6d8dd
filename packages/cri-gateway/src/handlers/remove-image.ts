import type { CriImageSpec } from '../images/cri-image.js';
import { removeImage as remove } from '../images/image-ops.js';
import type { HandlerDeps } from './types.js';

/** ImageService/RemoveImage: removes the image and all its names; absent is success. */
export async function removeImage(
  request: { image?: CriImageSpec | null },
  deps: HandlerDeps,
): Promise<Record<string, never>> {
  await remove(deps, request.image?.image ?? '');
  return {};
}
