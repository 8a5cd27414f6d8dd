import type { ContentUsageReply } from '@berth/api';
import { endpoint } from '@berth/kit';
import { z } from 'zod';
import type { ImageService } from '../images/service-core.js';

/** `usage`: bytes and files of the node's content store (CRI ImageFsInfo). */
export const usageEndpoint = (svc: ImageService) =>
  endpoint(z.object({}).passthrough(), (): Promise<ContentUsageReply> => svc.usage(), 'content store usage');
