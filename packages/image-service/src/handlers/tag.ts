import type { ImageApi } from '@berth/api';
import type { Handler } from '@berth/kit';
import type { ImageService } from '../images/service-core.js';

/** `tag`: a new name for an existing image. */
export const tag =
  (svc: ImageService): Handler<typeof ImageApi, 'tag'> =>
  (req, ctx) =>
    svc.tag(ctx.namespace, req);
