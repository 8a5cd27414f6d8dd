import { Redis } from 'ioredis';
import type { Logger } from 'pino';

export { Redis } from 'ioredis';

/**
 * Connects to Redis (redis://host:port/db, rediss://, or a unix socket path) and reconnects with
 * capped backoff forever. Commands issued while disconnected wait in the offline queue. A password
 * (`redis://:password@host`, or `redis://user:password@host` for an ACL user) is sent with AUTH on
 * every (re)connect; nothing logged here contains the URL.
 */
export function connectRedis(url: string, log?: Logger): Redis {
  const retryStrategy = (times: number) => Math.min(50 * 2 ** Math.min(times, 6), 2000);
  const client = url.startsWith('/')
    ? new Redis({ path: url, retryStrategy, maxRetriesPerRequest: null, lazyConnect: true })
    : new Redis(url, { retryStrategy, maxRetriesPerRequest: null, lazyConnect: true });
  if (log) {
    client.on('error', (err: Error) => log.warn({ err: err.message }, 'redis error'));
    client.on('reconnecting', () => log.info('redis reconnecting'));
    client.on('ready', () => log.info('redis ready'));
  }
  return client;
}
