import type { ImageApi } from '@berth/api';
import type { Handler } from '@berth/kit';
import type { ImageService } from '../images/service-core.js';

/** `push`: push an image to a registry (progress on berth.events.images.push.progress.<pushId>). */
export const push =
  (svc: ImageService): Handler<typeof ImageApi, 'push'> =>
  (req, ctx) =>
    svc.push(req, ctx.namespace);
