import type { ServiceDef } from './contract.js';
import { CriApi } from './cri.js';
import { ImageApi } from './image.js';
import { ShimApi } from './shim.js';
import { SnapshotApi } from './snapshot.js';
import { Service } from './subjects.js';
import { TaskApi } from './task.js';

/** Every service's definition by its NATS name (discovery, `berth status`). */
export const serviceDefs: Readonly<Record<Service, ServiceDef>> = {
  [Service.image]: ImageApi,
  [Service.snapshot]: SnapshotApi,
  [Service.task]: TaskApi,
  [Service.shim]: ShimApi,
  [Service.cri]: CriApi,
};

/** True when a service's state lives on one node (its subjects and keys carry the node). */
export function isHostLocal(service: Service): boolean {
  return serviceDefs[service].scope === 'host';
}
