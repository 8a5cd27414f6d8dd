import type { ImageApi } from '@berth/api';
import type { Handler } from '@berth/kit';
import type { ImageService } from '../images/service-core.js';

/** `login`: check credentials against a registry from this node, as the pulls will use them. */
export const login =
  (svc: ImageService): Handler<typeof ImageApi, 'login'> =>
  async (req) => {
    await svc.login(req.registry, req.auth);
    return {};
  };
