import { Service } from '@berth/api';
import { type ServiceContext, unimplementedEndpoints } from '@berth/kit';

/** The operations of the task-service; those later issues build answer UNIMPLEMENTED. */
export function createEndpoints(_ctx: ServiceContext) {
  return unimplementedEndpoints(Service.task, [
    'create-container',
    'get-container',
    'list-containers',
    'delete-container',
    'create',
    'start',
    'kill',
    'wait',
    'delete',
    'exec',
  ]);
}
