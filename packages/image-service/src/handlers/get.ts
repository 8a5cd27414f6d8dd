import type { ImageApi } from '@berth/api';
import type { Handler } from '@berth/kit';
import type { ImageService } from '../images/service-core.js';

/** `get`: one image by name or id/digest prefix. */
export const get =
  (svc: ImageService): Handler<typeof ImageApi, 'get'> =>
  (req, ctx) =>
    svc.get(ctx.namespace, req.name);
