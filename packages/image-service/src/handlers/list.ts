import type { ImageApi } from '@berth/api';
import type { Handler } from '@berth/kit';
import type { ImageService } from '../images/service-core.js';

/** `list`: one page of the namespace's images, optionally filtered. */
export const list =
  (svc: ImageService): Handler<typeof ImageApi, 'list'> =>
  async (req, ctx) => {
    const page = await svc.list(ctx.namespace, req);
    return { images: page.items, ...(page.nextCursor ? { nextCursor: page.nextCursor } : {}) };
  };
