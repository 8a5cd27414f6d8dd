import { GetImageRequest, type ImageUnpackReply } from '@berth/api';
import { endpoint } from '@berth/kit';
import type { ImageService } from '../images/service-core.js';

/** `unpack`: unpack a stored image into snapshots on this node and record its chainID. */
export const unpackEndpoint = (svc: ImageService) =>
  endpoint(
    GetImageRequest,
    (req, ctx): Promise<ImageUnpackReply> => svc.unpack(ctx.namespace, req.name),
    'unpack one image into snapshots',
  );
