import {
  type BerthError,
  type InfoReply,
  Service,
  type ServiceDef,
  serviceDefs,
  toBerthError,
} from '@berth/api';
import type { Scope } from './scope.js';

/** The `info` answer of one service, or why there was none. */
export interface ServiceHealth {
  service: Service;
  /** True when an instance answered and reported itself healthy. */
  ok: boolean;
  info?: InfoReply;
  error?: BerthError;
}

/** The services a node runs berth with (the cri-gateway is optional: only Kubernetes nodes run it). */
const CORE: readonly Service[] = [Service.image, Service.snapshot, Service.shim, Service.task];

/**
 * Asks the `info` operation of each service (host-local ones on the connection's node), in
 * parallel. An unanswered service is reported with its error (UNAVAILABLE when none runs).
 */
export async function nodeHealth(scope: Scope, opts: { includeCri?: boolean; timeoutMs?: number } = {}) {
  const names = opts.includeCri ? [...CORE, Service.cri] : CORE;
  return Promise.all(
    names.map(async (service): Promise<ServiceHealth> => {
      const def: ServiceDef = serviceDefs[service];
      try {
        const info = await scope.call(
          def,
          'info',
          {},
          { timeoutMs: opts.timeoutMs ?? def.ops.info.timeoutMs },
        );
        return { service, ok: info.healthy, info };
      } catch (err) {
        return { service, ok: false, error: toBerthError(err) };
      }
    }),
  );
}
