import { Service } from '@berth/api';
import { type ServiceContext, unimplementedEndpoints } from '@berth/kit';

/** The operations of the snapshot-service; those later issues build answer UNIMPLEMENTED. */
export function createEndpoints(_ctx: ServiceContext) {
  return unimplementedEndpoints(Service.snapshot, [
    'prepare',
    'view',
    'mounts',
    'commit',
    'remove',
    'stat',
    'list',
    'usage',
  ]);
}
