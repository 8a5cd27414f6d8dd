import { PullImageRequest, type PullReply } from '@berth/api';
import { endpoint } from '@berth/kit';
import type { ImageService } from '../images/service-core.js';

/** `pull`: fetch an image into the node's content store; progress streams as events. */
export const pullEndpoint = (svc: ImageService) =>
  endpoint(
    PullImageRequest,
    (req, ctx): Promise<PullReply> => svc.pull(req, ctx.namespace, ctx.signal),
    'pull an image (progress on berth.events.images.pull.progress.<pullId>)',
  );
