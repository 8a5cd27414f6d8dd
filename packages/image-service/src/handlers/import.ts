import { type ImportImageReply, ImportImageRequest } from '@berth/api';
import { endpoint } from '@berth/kit';
import type { ImageService } from '../images/service-core.js';

/** `import`: import an OCI layout or docker-save tar from a path on this host. */
export const importEndpoint = (svc: ImageService) =>
  endpoint(
    ImportImageRequest,
    (req, ctx): Promise<ImportImageReply> => svc.import(req, ctx.namespace),
    'import an OCI layout or docker-save tar from a path on this host',
  );
