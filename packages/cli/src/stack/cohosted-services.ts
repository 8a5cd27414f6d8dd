import { entry as cri } from '@berth/cri-gateway/start';
import { entry as image } from '@berth/image-service/start';
import { type CohostedService, cohost } from '@berth/kit/cohost';
import { entry as shim } from '@berth/shim/start';
import { entry as snapshot } from '@berth/snapshot-service/start';
import { entry as task } from '@berth/task-service/start';

/**
 * The services a co-hosted process runs, in start order: STACK_SERVICES' order, the shim first
 * (cohosted.test.ts checks the two agree). Each is the same `start` its own main.ts runs.
 */
export const COHOSTED: readonly CohostedService[] = [
  cohost(shim),
  cohost(snapshot),
  cohost(image),
  cohost(task),
  cohost(cri),
];
