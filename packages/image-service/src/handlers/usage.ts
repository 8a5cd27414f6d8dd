import type { ImageApi } from '@berth/api';
import type { Handler } from '@berth/kit';
import type { ImageService } from '../images/service-core.js';

/** `usage`: bytes and files of the node's content store (CRI ImageFsInfo). */
export const usage =
  (svc: ImageService): Handler<typeof ImageApi, 'usage'> =>
  () =>
    svc.usage();
