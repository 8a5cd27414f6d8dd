import { Service } from '@berth/api';
import { type ServiceContext, unimplementedEndpoints } from '@berth/kit';

/** The operations of the cri-gateway; those later issues build answer UNIMPLEMENTED. */
export function createEndpoints(_ctx: ServiceContext) {
  return unimplementedEndpoints(Service.cri, ['version']);
}
