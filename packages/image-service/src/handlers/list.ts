import { type ListImagesReply, ListImagesRequest } from '@berth/api';
import { endpoint } from '@berth/kit';
import type { ImageService } from '../images/service-core.js';

/** `list`: the namespace's images, optionally filtered. */
export const listEndpoint = (svc: ImageService) =>
  endpoint(
    ListImagesRequest,
    async (req, ctx): Promise<ListImagesReply> => ({ images: await svc.list(ctx.namespace, req) }),
    'list images',
  );
