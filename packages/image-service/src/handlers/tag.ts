import { type ImageRecord, TagImageRequest } from '@berth/api';
import { endpoint } from '@berth/kit';
import type { ImageService } from '../images/service-core.js';

/** `tag`: a new name for an existing image. */
export const tagEndpoint = (svc: ImageService) =>
  endpoint(TagImageRequest, (req, ctx): Promise<ImageRecord> => svc.tag(ctx.namespace, req), 'tag an image');
