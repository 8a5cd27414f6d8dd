import type { ImageApi } from '@berth/api';
import type { Handler } from '@berth/kit';
import type { ImageService } from '../images/service-core.js';

/** `gc`: remove blobs no image or in-flight pull references, and abandoned ingests. */
export const gc =
  (svc: ImageService): Handler<typeof ImageApi, 'gc'> =>
  (_req, ctx) =>
    svc.gc(ctx.namespace);
