import { makeTestPki, startNats, type TestPki } from '@berth/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BerthError, Code, connect } from './index.js';

// The SDK to a NATS that serves TLS and wants client certificates, with a CA made for this run.
let pki: TestPki;
let nats: Awaited<ReturnType<typeof startNats>>;

beforeAll(async () => {
  pki = await makeTestPki();
  nats = await startNats({ jetstream: false, tls: { ca: pki.ca, ...pki.server, verifyClients: true } });
});
afterAll(async () => {
  await nats?.stop();
  await pki?.remove();
});

describe('connect over TLS', () => {
  it('connects with the CA and a client certificate, and refuses a server another CA signed', async () => {
    const berth = await connect({ natsUrl: nats.url, node: 'n1', tls: { ca: pki.ca, ...pki.client } });
    await berth.close();
    const err = await connect({
      natsUrl: nats.url,
      node: 'n1',
      tls: { ca: pki.otherCa, ...pki.client },
    }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(BerthError);
    expect((err as BerthError).code).toBe(Code.UNAVAILABLE);
    expect((err as BerthError).message).toMatch(
      new RegExp(
        `^cannot connect to NATS at ${nats.url} over TLS: the server's certificate is not signed by the CA in ${pki.otherCa} `,
      ),
    );
  });
});
