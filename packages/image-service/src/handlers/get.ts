import { GetImageRequest, type ImageRecord } from '@berth/api';
import { endpoint } from '@berth/kit';
import type { ImageService } from '../images/service-core.js';

/** `get`: one image by name or id/digest prefix. */
export const getEndpoint = (svc: ImageService) =>
  endpoint(
    GetImageRequest,
    (req, ctx): Promise<ImageRecord> => svc.get(ctx.namespace, req.name),
    'get one image',
  );
