/**
 * NODE_EXTRA_CA_CERTS for a process that started without it: berth's launcher
 * (packages/cli/bin/berth) moves the variable to BERTH_EXTRA_CA_CERTS before it starts Node,
 * because Node 20 reads and parses that file, with its own ~140 root certificates, before any
 * JavaScript runs (~60 ms of every `berth` command on a host that sets it), and most commands
 * make no TLS connection. This module gives the process back what Node would have done with the
 * variable: its children get NODE_EXTRA_CA_CERTS in their environment (restoreExtraCaCerts), and
 * every TLS context it builds without a CA of its own trusts Node's root certificates plus the
 * file's (trustExtraCaCerts), read when the first such context is made.
 */
import { readFileSync } from 'node:fs';

/** The variable berth's launcher moves NODE_EXTRA_CA_CERTS to (no one else should set it). */
export const MOVED_EXTRA_CA_ENV = 'BERTH_EXTRA_CA_CERTS';

let movedFile: string | undefined;
let trusting: Promise<void> | undefined;

/**
 * Puts NODE_EXTRA_CA_CERTS back into `env` (the process's own environment, so every child gets
 * it) when the launcher moved it, drops BERTH_EXTRA_CA_CERTS, and remembers the file for
 * trustExtraCaCerts. Does nothing when NODE_EXTRA_CA_CERTS is set (then Node loaded it itself).
 * Call it first thing, before anything is spawned.
 */
export function restoreExtraCaCerts(env: NodeJS.ProcessEnv = process.env): void {
  const file = env[MOVED_EXTRA_CA_ENV];
  if (file === undefined) return;
  delete env[MOVED_EXTRA_CA_ENV];
  if (env.NODE_EXTRA_CA_CERTS !== undefined || file === '') return;
  env.NODE_EXTRA_CA_CERTS = file;
  movedFile = file;
}

/** The file whose certificates Node did not load because the launcher moved it, if any. */
export function movedExtraCaFile(): string | undefined {
  return movedFile;
}

/**
 * Makes every TLS context this process builds from now on without a `ca` of its own (nats.js's
 * upgrade to TLS, https requests, fetch, a natsTls without `ca`) trust Node's root certificates
 * and those of the moved NODE_EXTRA_CA_CERTS file, as Node's default store would have with the
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
    let ca: string[] | undefined;
    // tls.connect, https and fetch all build their contexts through it: one wrapper covers them.
    tls.createSecureContext = (options) => {
      if (options?.ca) return createSecureContext(options);
      ca ??= [...tls.rootCertificates, ...extraCertificates(file)];
      return createSecureContext({ ...options, ca });
    };
  });
  return trusting;
}

/**
 * The file's contents as one PEM text (OpenSSL takes every certificate in it, as Node does when it
 * loads the variable), or none when it cannot be read: Node then warns and trusts its roots.
 */
function extraCertificates(file: string): string[] {
  try {
    return [readFileSync(file, 'latin1')];
  } catch (err) {
    process.emitWarning(`Ignoring extra certs from \`${file}\`, load failed: ${(err as Error).message}`);
    return [];
  }
}
