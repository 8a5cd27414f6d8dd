import { Service } from '@berth/api';
import { type ServiceContext, unimplementedEndpoints } from '@berth/kit';

/** The operations of the shim; those later issues build answer UNIMPLEMENTED. */
export function createEndpoints(_ctx: ServiceContext) {
  return unimplementedEndpoints(Service.shim, ['create', 'start', 'kill', 'wait', 'delete', 'exec', 'state']);
}
