import { BerthError, Code } from '@berth/api/errors';
import { Redis, type RedisOptions } from 'ioredis';
import type { Logger } from 'pino';
import { redactUrl } from './redact.js';
import { waitForReplicas } from './redis-wait.js';
import { describeTlsFailure, type RedisSentinel, readTlsFiles, type TlsFiles } from './tls.js';

export { Redis } from 'ioredis';

/** How to reach Redis besides its URL: TLS files, and the sentinels when it runs under Sentinel. */
export interface RedisTransport {
  /** CA, client certificate and key; the URL must then be `rediss://`. */
  tls?: TlsFiles;
  /** Ask these sentinels for the primary of `sentinel.name`, which the URL's host must name. */
  sentinel?: RedisSentinel;
}

const bad = (message: string) => new BerthError(Code.INVALID_ARGUMENT, message);

/** The ioredis options a URL and transport give (the URL's login, database, TLS, sentinels). */
function optionsOf(url: string, t: RedisTransport): RedisOptions {
  if (url.startsWith('/')) {
    if (t.tls || t.sentinel)
      throw bad(`Redis at unix socket ${url} takes neither redisTls nor redisSentinel`);
    return { path: url };
  }
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw bad(`Redis URL ${JSON.stringify(redactUrl(url))} is not a URL`);
  }
  const secure = u.protocol === 'rediss:';
  if (!secure && u.protocol !== 'redis:') {
    throw bad(`Redis URL ${redactUrl(url)} must begin with redis:// or rediss://`);
  }
  if (t.tls && !secure) {
    throw bad(`redisTls is set but the Redis URL ${redactUrl(url)} is not TLS: write rediss://`);
  }
  const files = t.tls ? readTlsFiles(t.tls, 'Redis') : {};
  if (!t.sentinel) return secure ? { tls: files } : {};
  const s = t.sentinel;
  if (u.hostname !== s.name || u.port !== '') {
    throw bad(
      `with redisSentinel, the Redis URL names the master group: ${u.protocol}//[user:password@]${s.name}[/db], not ${redactUrl(url)}`,
    );
  }
  const db = u.pathname.length > 1 ? Number(u.pathname.slice(1)) : 0;
  if (!Number.isInteger(db) || db < 0)
    throw bad(`Redis URL ${redactUrl(url)}: the database must be a number`);
  return {
    name: s.name,
    sentinels: s.sentinels,
    db,
    ...(u.username ? { username: decodeURIComponent(u.username) } : {}),
    ...(u.password ? { password: decodeURIComponent(u.password) } : {}),
    ...(s.username ? { sentinelUsername: s.username } : {}),
    ...(s.password ? { sentinelPassword: s.password } : {}),
    ...(secure ? { tls: files, enableTLSForSentinelMode: true } : {}),
    ...(s.tls ? { sentinelTLS: files } : {}),
    // Not ioredis's failoverDetector: its disconnect can land while a reconnect is asking the
    // sentinels, which ends the client for good ("Connection is closed." on every command). A
    // failover is noticed anyway: a dead primary closes the connection, and Sentinel kills the
    // clients of a primary it demotes (a write that races it gets READONLY, see below).
    failoverDetector: false,
  };
}

/**
 * Makes a Redis client (redis://host:port/db, rediss://, or a unix socket path; with
 * `transport.sentinel`, whichever server the sentinels name primary) that reconnects with capped
 * backoff forever. Commands issued while disconnected wait in the offline queue. A password
 * (`redis://:password@host`, or `redis://user:password@host` for an ACL user) is sent with AUTH on
 * every (re)connect; nothing logged here contains the URL. Under Sentinel, a write refused with
 * READONLY (the server was demoted by a failover) reconnects, which asks the sentinels again, and
 * is resent. With `transport.sentinel.replicaAcks`, each write succeeds only once that many
 * replicas have it (see waitForReplicas).
 * Call `connect()` (or use openRedis, which names what went wrong).
 */
export function connectRedis(url: string, log?: Logger, transport: RedisTransport = {}): Redis {
  const retryStrategy = (times: number) => Math.min(50 * 2 ** Math.min(times, 6), 2000);
  const common: RedisOptions = {
    retryStrategy,
    sentinelRetryStrategy: retryStrategy,
    maxRetriesPerRequest: null,
    lazyConnect: true,
    // Only under Sentinel: there a reconnect asks for the new primary; a plain URL that points at
    // a replica would loop.
    ...(transport.sentinel
      ? { reconnectOnError: (err: Error) => (err.message.startsWith('READONLY') ? 2 : false) }
      : {}),
  };
  const own = optionsOf(url, transport);
  // A plain URL keeps being parsed by ioredis (host, port, login, database); the rest is options.
  const client =
    own.path !== undefined || own.sentinels !== undefined
      ? new Redis({ ...own, ...common })
      : new Redis(url, { ...own, ...common });
  // Only when asked: WAIT after every write costs a replication round trip per write.
  if (transport.sentinel?.replicaAcks) waitForReplicas(client, transport.sentinel.replicaAcks);
  if (log) {
    client.on('error', (err: Error) => log.warn({ err: err.message }, 'redis error'));
    client.on('reconnecting', () => log.info('redis reconnecting'));
    client.on('ready', () => log.info('redis ready'));
  }
  return client;
}

/**
 * Makes a client with connectRedis and connects it. If the first connection fails, the client is
 * closed and the error is UNAVAILABLE naming the server (or the sentinel master group) and the
 * reason, e.g. a server certificate not signed by the configured CA.
 */
export async function openRedis(url: string, log?: Logger, transport: RedisTransport = {}): Promise<Redis> {
  const client = connectRedis(url, log, transport);
  let last: Error | undefined;
  const keep = (err: Error) => {
    last = err;
  };
  client.on('error', keep);
  try {
    await client.connect();
    return client;
  } catch (err) {
    client.disconnect();
    const where = transport.sentinel
      ? `${redactUrl(url)} (sentinel master ${transport.sentinel.name})`
      : redactUrl(url);
    const cause = last ?? (err as Error);
    const why = describeTlsFailure(cause, transport.tls?.ca);
    throw new BerthError(
      Code.UNAVAILABLE,
      why
        ? `cannot connect to Redis at ${where} over TLS: ${why}`
        : `cannot connect to Redis at ${where}: ${cause.message}`,
      { cause },
    );
  } finally {
    client.off('error', keep);
  }
}
