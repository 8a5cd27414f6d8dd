import type { ImageApi } from '@berth/api';
import type { Handler } from '@berth/kit';
import { leasedSnapshots } from '../content/client-leases.js';
import type { ImageService } from '../images/service-core.js';

/**
 * `chain-roots`: the top chainID of every image on the node in every namespace, and the snapshot
 * keys clients' leases hold, for the snapshot-service's GC (image records and leases are the
 * image-service's; nobody else reads them).
 */
export const chainRoots =
  (svc: ImageService): Handler<typeof ImageApi, 'chain-roots'> =>
  async () => ({
    chainIds: await svc.images.chainRoots(),
    leasedSnapshots: await leasedSnapshots(svc.o.redis, svc.o.node),
  });
