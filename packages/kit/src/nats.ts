import { type ConnectionOptions, connect, type NatsConnection } from 'nats';
import type { Logger } from 'pino';

/**
 * Connects to NATS and keeps reconnecting forever, with jittered backoff, so a restarted
 * nats-server never takes a berth process down.
 */
export async function connectNats(opts: {
  url: string;
  name: string;
  log?: Logger;
  extra?: Partial<ConnectionOptions>;
}): Promise<NatsConnection> {
  const nc = await connect({
    servers: opts.url.split(','),
    name: opts.name,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 250,
    reconnectJitter: 250,
    pingInterval: 10_000,
    waitOnFirstConnect: true,
    ...opts.extra,
  });
  if (opts.log) {
    const log = opts.log;
    void (async () => {
      for await (const s of nc.status()) {
        if (s.type === 'reconnecting' || s.type === 'pingTimer') continue;
        log.info({ nats: s.type, data: String(s.data) }, 'nats status');
      }
    })();
  }
  return nc;
}
