import { readFileSync } from 'node:fs';
import { BerthError, Code } from '@berth/api/errors';
import * as z from 'zod';

const absolute = (what: string) => z.string().startsWith('/', `${what} must be an absolute path`);

/**
 * TLS files of a client connection to NATS or Redis: the CA that must have signed the server's
 * certificate (the system's CAs when absent), and a client certificate and key for servers that
 * verify clients. The server's certificate is always verified, and its name checked against the
 * host of the URL; there is no switch to turn that off.
 */
export const TlsFiles = z
  .object({
    ca: absolute('TLS CA file').optional(),
    cert: absolute('TLS certificate file').optional(),
    key: absolute('TLS key file').optional(),
  })
  .strict()
  .refine((t) => (t.cert === undefined) === (t.key === undefined), {
    message: 'a TLS client certificate needs its key, and a key its certificate (cert and key)',
  });
export type TlsFiles = z.infer<typeof TlsFiles>;

/**
 * Redis under Sentinel: the master group's name and the sentinels to ask for its current primary.
 * `username` / `password` log in to the sentinels (the data servers' login stays in the Redis
 * URL); `tls` makes the sentinel connections use TLS with the same files as Redis (`redisTls`).
 */
export const RedisSentinel = z
  .object({
    name: z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, 'sentinel master name must be 1-64 of [A-Za-z0-9._-]'),
    sentinels: z
      .array(z.object({ host: z.string().min(1), port: z.number().int().min(1).max(65_535) }).strict())
      .min(1, 'at least one sentinel is needed'),
    username: z.string().min(1).optional(),
    password: z.string().min(1).optional(),
    tls: z.boolean().optional(),
    /**
     * Make every write wait for this many replicas (Redis WAIT) before it succeeds, so an
     * acknowledged write survives a failover; unset sends no WAIT.
     */
    replicaAcks: z
      .object({
        replicas: z.number().int().min(1, 'replicaAcks.replicas must be at least 1').max(16),
        timeoutMs: z.number().int().min(1, 'replicaAcks.timeoutMs must be at least 1').max(60_000),
      })
      .strict()
      .optional(),
  })
  .strict();
export type RedisSentinel = z.infer<typeof RedisSentinel>;

/** Reads one TLS file, failing with a line naming it (and what it is for) when it cannot be read. */
function readTlsFile(file: string, what: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    throw new BerthError(Code.INVALID_ARGUMENT, `${what} ${file} cannot be read: ${(err as Error).message}`);
  }
}

/** The TLS files' contents, as node's tls.connect takes them; reading fails with a clear line. */
export function readTlsFiles(
  tls: TlsFiles,
  server: 'NATS' | 'Redis',
): { ca?: Buffer; cert?: Buffer; key?: Buffer } {
  return {
    ...(tls.ca ? { ca: readTlsFile(tls.ca, `${server} TLS CA file`) } : {}),
    ...(tls.cert ? { cert: readTlsFile(tls.cert, `${server} TLS certificate file`) } : {}),
    ...(tls.key ? { key: readTlsFile(tls.key, `${server} TLS key file`) } : {}),
  };
}

// Node's codes for a server certificate that does not chain to a trusted CA.
const UNTRUSTED = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_SIGNATURE_FAILURE',
  'CERT_UNTRUSTED',
]);

/**
 * Says why a TLS connection failed, in words an operator can act on, or undefined when `err` is
 * not a TLS failure: an untrusted or expired server certificate, one that does not name the host,
 * or a handshake the server refused (e.g. it wants a client certificate).
 */
export function describeTlsFailure(err: unknown, ca: string | undefined): string | undefined {
  if (!(err instanceof Error)) return undefined;
  const code = (err as NodeJS.ErrnoException).code ?? '';
  const trust = ca ? `the CA in ${ca}` : "the system's CAs";
  if (UNTRUSTED.has(code)) return `the server's certificate is not signed by ${trust} (${err.message})`;
  if (code === 'CERT_HAS_EXPIRED' || code === 'CERT_NOT_YET_VALID') {
    return `the server's certificate is not valid now (${err.message})`;
  }
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') {
    return `the server's certificate does not name the host connected to (${err.message})`;
  }
  if (/^ERR_SSL_|^ERR_TLS_/.test(code) || /\b(?:ssl|tls) alert\b|certificate required/i.test(err.message)) {
    return `the TLS handshake failed (${err.message}): does the server want a client certificate (cert and key)?`;
  }
  return undefined;
}
