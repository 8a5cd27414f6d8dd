import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { dirname, join } from 'node:path';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { makeTestPki, type TestPki } from '@berth/testing';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';

// An https server (an OTLP collector) whose certificate only the moved NODE_EXTRA_CA_CERTS file
// trusts, as for a CLI started by berth's launcher. This process's own Node did not load that file.
let pki: TestPki;
let server: Server;
let port: number;
let url: string;

beforeAll(async () => {
  pki = await makeTestPki();
  server = createServer(
    { cert: readFileSync(pki.server.cert), key: readFileSync(pki.server.key) },
    (req, res) => {
      req.resume();
      req.on('end', () => res.end('{}'));
    },
  );
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  port = (server.address() as AddressInfo).port;
  url = `https://127.0.0.1:${port}/v1/traces`;
});
afterAll(async () => {
  server?.close();
  await pki?.remove();
});

// Each test gets the module fresh (no file moved, nothing trusted yet) and leaves node:tls's
// createSecureContext as it found it: trustExtraCaCerts replaces it for the whole process.
let ca: typeof import('./extra-ca.js');
let postOtlp: typeof import('./tracing/otlp-post.js').postOtlp;
const original = tls.createSecureContext;
beforeEach(async () => {
  vi.resetModules();
  ca = await import('./extra-ca.js');
  ({ postOtlp } = await import('./tracing/otlp-post.js'));
});
afterEach(() => {
  tls.createSecureContext = original;
});

/** Moves `file` as the launcher does, restores it and trusts it. */
async function trustMoved(file: string) {
  ca.restoreExtraCaCerts({ [ca.MOVED_EXTRA_CA_ENV]: file });
  await ca.trustExtraCaCerts();
}

/** 'ok' when a TLS connection to the server with `options` is authorised, else the error's code. */
function connect(options: tls.ConnectionOptions = {}): Promise<string> {
  return new Promise((resolve) => {
    const s = tls.connect({ host: '127.0.0.1', port, ...options }, () => {
      s.destroy();
      resolve('ok');
    });
    s.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
  });
}

describe('restoreExtraCaCerts', () => {
  it('puts the moved variable back for the processes berth starts', () => {
    const env: NodeJS.ProcessEnv = { BERTH_EXTRA_CA_CERTS: pki.ca };
    ca.restoreExtraCaCerts(env);
    expect(env).toEqual({ NODE_EXTRA_CA_CERTS: pki.ca });
    // Set by node's own start (berth.js run directly): that one stays.
    const direct: NodeJS.ProcessEnv = { BERTH_EXTRA_CA_CERTS: pki.ca, NODE_EXTRA_CA_CERTS: '/other.pem' };
    ca.restoreExtraCaCerts(direct);
    expect(direct).toEqual({ NODE_EXTRA_CA_CERTS: '/other.pem' });
  });
});

describe('trustExtraCaCerts', () => {
  it('makes https trust the moved file once restoreExtraCaCerts found it, and only then', async () => {
    const refused = await postOtlp(url, '{}', {}, 5000);
    expect(refused).toMatchObject({ ok: false });
    expect((refused as { error: string }).error).toMatch(/certificate/);
    // Nothing was moved: nothing to trust.
    await ca.trustExtraCaCerts();
    expect(tls.createSecureContext).toBe(original);
    expect(await postOtlp(url, '{}', {}, 5000)).toMatchObject({ ok: false });

    const env: NodeJS.ProcessEnv = { BERTH_EXTRA_CA_CERTS: pki.ca };
    ca.restoreExtraCaCerts(env);
    expect(env).toEqual({ NODE_EXTRA_CA_CERTS: pki.ca });
    expect(await postOtlp(url, '{}', {}, 5000)).toEqual({ ok: true });
  });

  it('leaves a connection with a CA of its own to that CA alone, as Node does with the variable', async () => {
    await trustMoved(pki.ca);
    expect(await connect({ ca: readFileSync(pki.otherCa) })).toMatch(/CERT|SIGNED|ISSUER|VERIFY/);
    expect(await connect({ ca: readFileSync(pki.ca) })).toBe('ok');
  });

  it('builds the context of connections that define none once, and keeps trusting the file', async () => {
    await trustMoved(pki.ca);
    const first = tls.createSecureContext();
    // Connection options (host, servername...) do not make another context; Node's defaults do.
    expect(tls.createSecureContext({ servername: 'x' } as tls.SecureContextOptions)).toBe(first);
    expect(await connect()).toBe('ok');
    expect(await connect({ servername: 'localhost' })).toBe('ok');
    const min = tls.DEFAULT_MIN_VERSION;
    try {
      tls.DEFAULT_MIN_VERSION = 'TLSv1.3';
      expect(tls.createSecureContext()).not.toBe(first);
      expect(await connect()).toBe('ok');
    } finally {
      tls.DEFAULT_MIN_VERSION = min;
    }
  });

  it('adds the file to a context built from options of its own without a CA', async () => {
    await trustMoved(pki.ca);
    const a = tls.createSecureContext({ minVersion: 'TLSv1.2' });
    expect(tls.createSecureContext({ minVersion: 'TLSv1.2' })).not.toBe(a);
    expect(await connect({ minVersion: 'TLSv1.2', ciphers: tls.DEFAULT_CIPHERS })).toBe('ok');
    // A falsy `ca` is none, for Node as here.
    expect(await connect({ ca: '' })).toBe('ok');
  });
});

// The built module, in a node whose CA store is OpenSSL's (--use-openssl-ca, SSL_CERT_FILE):
// the file's certificates are added to that store, as Node adds NODE_EXTRA_CA_CERTS to it.
const builtModule = join(dirname(fileURLToPath(import.meta.url)), '..', 'dist', 'extra-ca.js');
const CHILD = `
const ca = await import(process.argv[1]);
ca.restoreExtraCaCerts();
await ca.trustExtraCaCerts();
const tls = await import('node:tls');
const s = tls.connect({ host: '127.0.0.1', port: Number(process.argv[2]) }, () => { console.log('ok'); s.destroy(); });
s.on('error', (err) => console.log(err.code));
`;

describe("trustExtraCaCerts with OpenSSL's CA store", () => {
  const child = async (store: string, moved: string) => {
    const { NODE_EXTRA_CA_CERTS: _, ...env } = process.env;
    const { stdout } = await promisify(execFile)(
      process.execPath,
      ['--use-openssl-ca', '--input-type=module', '-e', CHILD, builtModule, String(port)],
      { env: { ...env, SSL_CERT_FILE: store, SSL_CERT_DIR: '/nonexistent', BERTH_EXTRA_CA_CERTS: moved } },
    );
    return stdout.trim();
  };

  it('keeps trusting what that store trusts, and trusts the moved file too', async () => {
    expect(await child(pki.ca, pki.otherCa)).toBe('ok');
    expect(await child(pki.otherCa, pki.ca)).toBe('ok');
    expect(await child(pki.otherCa, pki.otherCa)).toMatch(/CERT|SIGNED|ISSUER|VERIFY/);
  });
});
