import { type PushImageReply, PushImageRequest } from '@berth/api';
import { endpoint } from '@berth/kit';
import type { ImageService } from '../images/service-core.js';

/** `push`: push an image to a registry (progress on berth.events.images.push.progress.<pushId>). */
export const pushEndpoint = (svc: ImageService) =>
  endpoint(
    PushImageRequest,
    (req, ctx): Promise<PushImageReply> => svc.push(req, ctx.namespace),
    'push an image to a registry (progress on berth.events.images.push.progress.<pushId>)',
  );
