import type { ImageApi } from '@berth/api';
import type { Handler } from '@berth/kit';
import type { ImageService } from '../images/service-core.js';

/** `pull`: fetch an image into the node's content store; progress streams as events. */
export const pull =
  (svc: ImageService): Handler<typeof ImageApi, 'pull'> =>
  (req, ctx) =>
    svc.pull(req, ctx.namespace, ctx.signal);
