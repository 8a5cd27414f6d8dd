import type { ImageApi } from '@berth/api';
import type { Handler } from '@berth/kit';
import type { ImageService } from '../images/service-core.js';

/** `unpack`: unpack a stored image into snapshots on this node and record its chainID. */
export const unpack =
  (svc: ImageService): Handler<typeof ImageApi, 'unpack'> =>
  (req, ctx) =>
    svc.unpack(ctx.namespace, req.name);
