import type { GcReply } from '@berth/api';
import { endpoint } from '@berth/kit';
import { z } from 'zod';
import type { ImageService } from '../images/service-core.js';

/** `gc`: remove blobs no image or in-flight pull references, and abandoned ingests. */
export const gcEndpoint = (svc: ImageService) =>
  endpoint(
    z.object({}).passthrough(),
    (_req, ctx): Promise<GcReply> => svc.gc(ctx.namespace),
    'collect garbage',
  );
