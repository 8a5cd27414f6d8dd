import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { makeTestPki, type TestPki } from '@berth/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { restoreExtraCaCerts, trustExtraCaCerts } from './extra-ca.js';
import { postOtlp } from './tracing/otlp-post.js';

// An OTLP collector over https whose certificate only the moved NODE_EXTRA_CA_CERTS file trusts,
// as for a CLI started by berth's launcher. This process's own Node did not load that file.
let pki: TestPki;
let server: Server;
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
  url = `https://127.0.0.1:${(server.address() as AddressInfo).port}/v1/traces`;
});
afterAll(async () => {
  server?.close();
  await pki?.remove();
});

describe('trustExtraCaCerts', () => {
  it('makes https trust the moved file once restoreExtraCaCerts found it, and only then', async () => {
    const refused = await postOtlp(url, '{}', {}, 5000);
    expect(refused).toMatchObject({ ok: false });
    expect((refused as { error: string }).error).toMatch(/certificate/);
    // Nothing was moved: nothing to trust.
    await trustExtraCaCerts();
    expect(await postOtlp(url, '{}', {}, 5000)).toMatchObject({ ok: false });

    const env: NodeJS.ProcessEnv = { BERTH_EXTRA_CA_CERTS: pki.ca };
    restoreExtraCaCerts(env);
    expect(env).toEqual({ NODE_EXTRA_CA_CERTS: pki.ca });
    expect(await postOtlp(url, '{}', {}, 5000)).toEqual({ ok: true });
  });

  it('leaves a connection with a CA of its own to that CA alone, as Node does with the variable', async () => {
    await trustExtraCaCerts();
    const { request } = await import('node:https');
    const status = await new Promise<string>((resolve) => {
      const req = request(url, { method: 'POST', agent: false, ca: readFileSync(pki.otherCa) }, (res) => {
        res.resume();
        resolve(String(res.statusCode));
      });
      req.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
      req.end('{}');
    });
    expect(status).toMatch(/CERT|SIGNED|ISSUER|VERIFY/);
  });
});
