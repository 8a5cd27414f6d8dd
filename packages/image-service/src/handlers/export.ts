import { type ExportImageReply, ExportImageRequest } from '@berth/api';
import { endpoint } from '@berth/kit';
import type { ImageService } from '../images/service-core.js';

/** `export`: write an OCI layout tar of images to a path on this host. */
export const exportEndpoint = (svc: ImageService) =>
  endpoint(
    ExportImageRequest,
    (req, ctx): Promise<ExportImageReply> => svc.export(req, ctx.namespace),
    'write an OCI layout tar of images to a path on this host',
  );
