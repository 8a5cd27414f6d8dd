import type { CriAuthConfig } from '../images/auth.js';
import type { CriImageSpec } from '../images/cri-image.js';
import { pullImage as pull } from '../images/image-ops.js';
import type { HandlerDeps } from './types.js';

/**
 * ImageService/PullImage: pulls and unpacks the image with the given credentials; answers the
 * image id (config digest) as `image_ref`, as containerd does. The sandbox config is not needed.
 */
export async function pullImage(
  request: { image?: CriImageSpec | null; auth?: CriAuthConfig | null },
  deps: HandlerDeps,
): Promise<{ image_ref: string }> {
  const spec = request.image?.image ?? '';
  deps.log.info({ image: spec, auth: Boolean(request.auth) }, 'CRI pull');
  return { image_ref: await pull(deps, spec, request.auth) };
}
