import type { CriAuthConfig } from '../images/auth.js';
import type { CriImageSpec } from '../images/cri-image.js';
import { pullImage as pull } from '../images/image-ops.js';
import { beforeReply } from './after-reply.js';
import { prepareImageStatus } from './image-status.js';
import type { HandlerDeps } from './types.js';

/**
 * ImageService/PullImage: pulls and unpacks the image with the given credentials; answers the
 * image id (config digest) as `image_ref`, as containerd does. The sandbox config is not needed.
 * The image's status reply is prepared before this one (the kubelet and critest read it next).
 */
export async function pullImage(
  request: { image?: CriImageSpec | null; auth?: CriAuthConfig | null },
  deps: HandlerDeps,
): Promise<{ image_ref: string }> {
  const spec = request.image?.image ?? '';
  deps.log.info({ image: spec, auth: Boolean(request.auth) }, 'CRI pull');
  const ref = await pull(deps, spec, request.auth);
  await beforeReply(deps, 'ImageStatus', () => prepareImageStatus(spec, deps));
  return { image_ref: ref };
}
