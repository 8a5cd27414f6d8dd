import type { ServiceDef } from '@berth/api';
import type { NatsConnection } from 'nats';
import { createLogger } from './logger.js';
import { type Handlers, serve } from './service.js';

/**
 * Serves `handlers` of `service` for `node` on `nc`, as a test serves a stand-in for a service the
 * one under test calls: over real NATS with the real contract (input parsed, replies checked), no
 * logs. Returns its stop, which may be called more than once (each call waits for the one stop).
 */
export async function serveStandIn<S extends ServiceDef>(
  nc: NatsConnection,
  service: S,
  node: string,
  handlers: Handlers<S>,
): Promise<() => Promise<void>> {
  const served = await serve({
    nc,
    service,
    version: '0.0.0-test',
    node,
    log: createLogger({ service: `${service.name}-stand-in`, node, level: 'silent' }),
    handlers,
  });
  let stopped: Promise<void> | undefined;
  return () => {
    stopped ??= served.stop(500);
    return stopped;
  };
}
