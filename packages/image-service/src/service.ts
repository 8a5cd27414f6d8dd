import { Service } from '@berth/api';
import { type ServiceContext, unimplementedEndpoints } from '@berth/kit';

/** The operations of the image-service; those later issues build answer UNIMPLEMENTED. */
export function createEndpoints(_ctx: ServiceContext) {
  return unimplementedEndpoints(Service.image, [
    'pull',
    'list',
    'get',
    'remove',
    'tag',
    'push',
    'import',
    'export',
  ]);
}
