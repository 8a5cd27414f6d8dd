import type { ImageApi } from '@berth/api';
import type { Handler } from '@berth/kit';
import type { ImageService } from '../images/service-core.js';

/** `import`: import an OCI layout or docker-save tar from a path on this host. */
export const importImages =
  (svc: ImageService): Handler<typeof ImageApi, 'import'> =>
  (req, ctx) =>
    svc.import(req, ctx.namespace);
