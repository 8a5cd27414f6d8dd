import { readFileSync } from 'node:fs';
import { BerthError, Code } from '@berth/api/errors';
import {
  type ConnectionOptions,
  connect,
  createInbox,
  credsAuthenticator,
  ErrorCode,
  type NatsConnection,
  NatsError,
} from 'nats';
import type { Logger } from 'pino';
import { trustExtraCaCerts } from './extra-ca.js';
import { describeTlsFailure, readTlsFiles, type TlsFiles } from './tls.js';

/** What connectNats takes out of a NATS URL list: bare server addresses and the credentials. */
export interface NatsUrlParts {
  /** Servers without userinfo, as nats.js wants them. */
  servers: string[];
  /** `user:pass@` in a URL; both percent-decoded. */
  user?: string;
  pass?: string;
  /** `TOKEN@` (userinfo without a colon) in a URL; percent-decoded. */
  token?: string;
}

/**
 * Splits a comma-separated NATS URL list into servers and credentials. nats.js v2 ignores the
 * userinfo of a server URL, so `nats://user:pass@host` or `nats://TOKEN@host` must become
 * connection options; it also keeps the servers it was given in errors and status events, so the
 * credentials are stripped from them. The first URL that carries credentials supplies them.
 */
export function parseNatsUrl(url: string): NatsUrlParts {
  const out: NatsUrlParts = { servers: [] };
  let found = false;
  for (const raw of url.split(',')) {
    const part = raw.trim();
    if (part === '') continue;
    const m = /^([a-zA-Z][a-zA-Z0-9+.-]*:\/\/)?([^/?#@]*)@(.*)$/.exec(part);
    if (!m) {
      out.servers.push(part);
      continue;
    }
    const [, scheme = '', userinfo = '', rest = ''] = m;
    out.servers.push(`${scheme}${rest}`);
    if (found || userinfo === '') continue;
    found = true;
    const colon = userinfo.indexOf(':');
    if (colon < 0) {
      out.token = decodeURIComponent(userinfo);
    } else {
      out.user = decodeURIComponent(userinfo.slice(0, colon));
      out.pass = decodeURIComponent(userinfo.slice(colon + 1));
    }
  }
  return out;
}

/** First token of every reply inbox; a user's inboxes are `_INBOX.<user>.<id>`. */
export const INBOX_ROOT = '_INBOX';

/** A NATS user name that can also be a run of subject tokens (berth's users: `<principal>.<node>`). */
const SUBJECT_SAFE_USER = /^[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*$/;

/**
 * The reply-inbox prefix of a NATS user: `_INBOX.<user>`. A server that limits each user to its
 * own inboxes (kit/permissions.ts) keeps one process from reading another's replies; without a
 * subject-safe user name, nats.js's default `_INBOX` is kept.
 */
export function inboxPrefixOf(user: string | undefined): string | undefined {
  return user !== undefined && SUBJECT_SAFE_USER.test(user) ? `${INBOX_ROOT}.${user}` : undefined;
}

/**
 * Connects to NATS and keeps reconnecting forever, with jittered backoff, so a restarted
 * nats-server never takes a berth process down. Credentials come from the URL (`user:pass@` or
 * `TOKEN@`), or from a NATS user credentials file (`creds`, read again on every reconnect so a
 * rotated file is picked up); options in `extra` win over both. With `tls` the connection must be
 * TLS and the server's certificate must chain to `tls.ca`; the files are read again on every
 * reconnect, so rotated certificates are picked up. A first connection that fails on TLS is
 * refused at once with UNAVAILABLE naming the servers and the reason, rather than retried forever.
 */
export async function connectNats(opts: {
  url: string;
  name: string;
  log?: Logger;
  /** Path of a NATS user credentials file (JWT + nkey seed), e.g. written by `nsc`. */
  creds?: string;
  extra?: Partial<ConnectionOptions>;
  /** TLS files (CA, client certificate and key); TLS is required when given. */
  tls?: TlsFiles;
}): Promise<NatsConnection> {
  const parts = parseNatsUrl(opts.url);
  const auth: Partial<ConnectionOptions> = {};
  if (parts.token !== undefined) auth.token = parts.token;
  if (parts.user !== undefined) {
    auth.user = parts.user;
    auth.pass = parts.pass ?? '';
    const inboxPrefix = inboxPrefixOf(parts.user);
    if (inboxPrefix) auth.inboxPrefix = inboxPrefix;
  }
  if (opts.creds) auth.authenticator = credsAuthenticator(readCreds(opts.creds));
  const options: ConnectionOptions = {
    servers: parts.servers,
    name: opts.name,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 250,
    reconnectJitter: 250,
    pingInterval: 10_000,
    waitOnFirstConnect: true,
    ...auth,
    ...(opts.tls ? { tls: natsTls(opts.tls) } : {}),
    ...opts.extra,
  };
  // A CLI started by berth's launcher without NODE_EXTRA_CA_CERTS trusts its CAs from here on.
  await trustExtraCaCerts();
  const nc = await firstConnect(options, opts.tls);
  if (options.inboxPrefix) inboxPrefixes.set(nc, options.inboxPrefix);
  if (opts.log) {
    const log = opts.log;
    void (async () => {
      for await (const s of nc.status()) {
        if (s.type === 'reconnecting' || s.type === 'pingTimer') continue;
        // The line says the connection serves again: once the server has answered a ping sent
        // after the subscriptions nats.js re-sends, it holds them (a request sent on the strength
        // of the line met "no responders" in CI otherwise).
        if (s.type === 'reconnect') await nc.flush().catch(() => undefined);
        log.info({ nats: s.type, data: String(s.data) }, 'nats status');
      }
    })();
  }
  return nc;
}

/** The inbox prefix each connection made by connectNats uses (its user's, see inboxPrefixOf). */
const inboxPrefixes = new WeakMap<NatsConnection, string>();

/**
 * A new inbox subject of this connection's user (`_INBOX.<user>.<id>`): the only inboxes a user
 * may subscribe to when the server limits each user to its own. Use it for any subscription on
 * an inbox made by hand (streams), never nats.js's bare createInbox().
 */
export function newInbox(nc: NatsConnection): string {
  return createInbox(inboxPrefixes.get(nc));
}

/** nats.js's TLS options: file names (read on every connection), checked readable up front. */
function natsTls(tls: TlsFiles): NonNullable<ConnectionOptions['tls']> {
  readTlsFiles(tls, 'NATS');
  return {
    ...(tls.ca ? { caFile: tls.ca } : {}),
    ...(tls.cert ? { certFile: tls.cert } : {}),
    ...(tls.key ? { keyFile: tls.key } : {}),
  };
}

/**
 * Connects once without waiting, so that a TLS failure (which nats.js would retry silently
 * forever while waiting on a first connection) ends start-up with its reason; then, if no server
 * was reachable, waits for one as asked.
 */
async function firstConnect(options: ConnectionOptions, tls: TlsFiles | undefined): Promise<NatsConnection> {
  try {
    return await connect({ ...options, waitOnFirstConnect: false });
  } catch (err) {
    const servers = [options.servers ?? []].flat().join(',');
    const code = err instanceof NatsError && tls ? err.code : undefined;
    // A server that wants a client certificate closes the connection after the handshake without
    // a word nats.js passes on; it waits for the server's INFO until its timeout.
    const why =
      code === ErrorCode.ServerOptionNotAvailable
        ? 'the server does not offer TLS'
        : code === ErrorCode.Timeout
          ? 'the server did not answer after the TLS handshake: does it want a client certificate (cert and key)?'
          : describeTlsFailure(err, tls?.ca);
    if (why) {
      throw new BerthError(Code.UNAVAILABLE, `cannot connect to NATS at ${servers} over TLS: ${why}`, {
        cause: err,
      });
    }
    if (!options.waitOnFirstConnect) throw err;
    return connect(options);
  }
}

/**
 * Reads a credentials file once up front, so a missing or unreadable file fails start-up with a
 * line naming it rather than as an authentication error on every reconnect.
 */
function readCreds(file: string): () => Uint8Array {
  const read = () => {
    try {
      return readFileSync(file);
    } catch (err) {
      throw new BerthError(
        Code.INVALID_ARGUMENT,
        `NATS credentials file ${file} cannot be read: ${(err as Error).message}`,
      );
    }
  };
  let last = read();
  return () => {
    try {
      last = read();
    } catch {
      // Keep the last good copy: a file being replaced must not break a reconnect.
    }
    return last;
  };
}
