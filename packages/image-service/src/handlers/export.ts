import type { ImageApi } from '@berth/api';
import type { Handler } from '@berth/kit';
import type { ImageService } from '../images/service-core.js';

/** `export`: write an OCI layout tar of images to a path on this host. */
export const exportImages =
  (svc: ImageService): Handler<typeof ImageApi, 'export'> =>
  (req, ctx) =>
    svc.export(req, ctx.namespace);
