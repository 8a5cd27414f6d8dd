import { type RemoveImageReply, RemoveImageRequest } from '@berth/api';
import { endpoint } from '@berth/kit';
import type { ImageService } from '../images/service-core.js';

/** `remove`: drop an image name, then garbage-collect. */
export const removeEndpoint = (svc: ImageService) =>
  endpoint(
    RemoveImageRequest,
    (req, ctx): Promise<RemoveImageReply> => svc.remove(ctx.namespace, req),
    'remove an image name and collect unreferenced content',
  );
