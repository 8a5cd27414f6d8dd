/**
 * NODE_EXTRA_CA_CERTS for a process that started without it: berth's launcher
 * (packages/cli/bin/berth) moves the variable to BERTH_EXTRA_CA_CERTS before it starts Node,
 * because Node 20 reads and parses that file, with its own ~140 root certificates, before any
 * JavaScript runs (~60 ms of every `berth` command on a host that sets it), and most commands
 * make no TLS connection. This module gives the process back what Node would have done with the
 * variable: its children get NODE_EXTRA_CA_CERTS in their environment (restoreExtraCaCerts), and
 * every TLS context it builds without a CA of its own trusts Node's CA store plus the file's
 * certificates (trustExtraCaCerts), read when the first such context is made.
 */
import { readFileSync } from 'node:fs';
import type { SecureContext, SecureContextOptions } from 'node:tls';

/** The variable berth's launcher moves NODE_EXTRA_CA_CERTS to (no one else should set it). */
export const MOVED_EXTRA_CA_ENV = 'BERTH_EXTRA_CA_CERTS';

/**
 * The options Node 20's tls.createSecureContext reads (lib/_tls_common.js and
 * internal/tls/secure-context.js): any other key (host, servername, socket...) belongs to the
 * connection, so a context built without these is the same for every call.
 */
const CONTEXT_KEYS = [
  'allowPartialTrustChain',
  'ca',
  'cert',
  'ciphers',
  'clientCertEngine',
  'crl',
  'dhparam',
  'ecdhCurve',
  'honorCipherOrder',
  'key',
  'maxVersion',
  'minVersion',
  'passphrase',
  'pfx',
  'privateKeyEngine',
  'privateKeyIdentifier',
  'secureOptions',
  'secureProtocol',
  'sessionIdContext',
  'sessionTimeout',
  'sigalgs',
  'ticketKeys',
] as const;

let movedFile: string | undefined;
let trusting: Promise<void> | undefined;

/**
 * Puts NODE_EXTRA_CA_CERTS back into `env` (the process's own environment, so every child gets
 * it) when the launcher moved it, drops BERTH_EXTRA_CA_CERTS, and remembers the file for
 * trustExtraCaCerts. Does nothing when NODE_EXTRA_CA_CERTS is set (then Node loaded it itself).
 * Call it first thing, before anything is spawned.
 */
export function restoreExtraCaCerts(env: NodeJS.ProcessEnv = process.env): void {
  const file = putBackExtraCaCerts(env);
  if (file !== undefined) movedFile = file;
}

/**
 * restoreExtraCaCerts on an environment alone (one a served command runs with, not this
 * process's): NODE_EXTRA_CA_CERTS back, BERTH_EXTRA_CA_CERTS dropped; the file put back, if any.
 */
export function putBackExtraCaCerts(env: NodeJS.ProcessEnv): string | undefined {
  const file = env[MOVED_EXTRA_CA_ENV];
  if (file === undefined) return undefined;
  delete env[MOVED_EXTRA_CA_ENV];
  if (env.NODE_EXTRA_CA_CERTS !== undefined || file === '') return undefined;
  env.NODE_EXTRA_CA_CERTS = file;
  return file;
}

/**
 * Makes every TLS context this process builds from now on without a `ca` of its own (nats.js's
 * upgrade to TLS, https requests, fetch, a natsTls without `ca`) trust Node's CA store and the
 * certificates of the moved NODE_EXTRA_CA_CERTS file, as Node's default store would have with the
 * variable set. A context given its own `ca` trusts only that, as with the variable. Does nothing
 * (and loads nothing) unless restoreExtraCaCerts found a moved file; await it before anything
 * that may connect over TLS. Loads node:tls (~1 ms) only then.
 */
export function trustExtraCaCerts(): Promise<void> {
  const file = movedFile;
  if (file === undefined) return Promise.resolve();
  // The module's default export is its CommonJS exports object, which Node's own modules read
  // createSecureContext from at each call (an ES module namespace cannot be assigned to).
  trusting ??= import('node:tls').then((ns) => {
    const tls = (ns as unknown as { default: typeof import('node:tls') }).default;
    const createSecureContext = tls.createSecureContext;
    let pem: string | undefined;
    // Node's own store (bundled roots, or OpenSSL's with --use-openssl-ca) plus the file, as
    // Node adds a `ca` option's certificates: addCACert copies the store the context was given
    // (its X509 objects, parsed once per process) and parses only the file's PEM text.
    const withFile = (ctx: SecureContext): SecureContext => {
      pem ??= extraCertificates(file);
      if (pem !== '') ctx.context.addCACert(pem);
      return ctx;
    };
    // One context for every call that defines none of its own, built at the first: Node builds a
    // fresh one per call (~0.2 ms), but with the file added each would parse its certificates
    // again (~30 ms for /etc/ssl/certs' 144). The tls.DEFAULT_* values it was built from are its
    // key, as a program may change them.
    let shared: { defaults: string; ctx: SecureContext } | undefined;
    // tls.connect, https and fetch all build their contexts through it: one wrapper covers them.
    tls.createSecureContext = (options?: SecureContextOptions) => {
      if (options?.ca || !definesNone(options)) {
        const ctx = createSecureContext(options);
        return options?.ca ? ctx : withFile(ctx);
      }
      const defaults = [
        tls.DEFAULT_MIN_VERSION,
        tls.DEFAULT_MAX_VERSION,
        tls.DEFAULT_CIPHERS,
        tls.DEFAULT_ECDH_CURVE,
      ];
      const key = defaults.join('\n');
      if (shared?.defaults !== key) shared = { defaults: key, ctx: withFile(createSecureContext(options)) };
      return shared.ctx;
    };
  });
  return trusting;
}

/** Whether createSecureContext's options leave the context as the defaults make it. */
function definesNone(options: unknown): boolean {
  if (options === undefined || options === null) return true;
  // Not an object: Node's createSecureContext throws, and must still be the one to.
  if (typeof options !== 'object') return false;
  const o = options as Record<string, unknown>;
  return CONTEXT_KEYS.every((k) => o[k] === undefined);
}

/**
 * The file's contents as one PEM text (addCACert takes every certificate in it, as Node does when
 * it loads the variable), or '' when it cannot be read: Node then warns and trusts its store.
 */
function extraCertificates(file: string): string {
  try {
    return readFileSync(file, 'latin1');
  } catch (err) {
    process.emitWarning(`Ignoring extra certs from \`${file}\`, load failed: ${(err as Error).message}`);
    return '';
  }
}
