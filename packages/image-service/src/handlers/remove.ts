import type { ImageApi } from '@berth/api';
import type { Handler } from '@berth/kit';
import type { ImageService } from '../images/service-core.js';

/** `remove`: drop an image name, then garbage-collect. */
export const remove =
  (svc: ImageService): Handler<typeof ImageApi, 'remove'> =>
  (req, ctx) =>
    svc.remove(ctx.namespace, req);
