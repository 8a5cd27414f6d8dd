import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Code } from '@berth/api';
import { freePort, makeTestPki, startNats } from '@berth/testing';
import { afterEach, describe, expect, it } from 'vitest';
import { createContext } from './context.js';

const saved = { ...process.env };
afterEach(() => {
  process.env = { ...saved };
});

describe('CLI context', () => {
  it('names the NATS it cannot reach, without the credentials, and says what to do', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'berth-ctx-'));
    try {
      const port = await freePort();
      Object.assign(process.env, {
        BERTH_NATS_URL: `nats://berth:s3cret@127.0.0.1:${port}`,
        BERTH_STATE_ROOT: join(dir, 'state'),
        BERTH_RUN_ROOT: join(dir, 'run'),
      });
      const ctx = createContext();
      const err = await ctx.nats().then(
        () => undefined,
        (e: unknown) => e as { code: string; message: string },
      );
      expect(err?.code).toBe(Code.UNAVAILABLE);
      expect(err?.message).toBe(
        `cannot reach NATS at nats://***@127.0.0.1:${port} (CONNECTION_REFUSED): is berth up? start it with 'berth up'`,
      );
      expect(err?.message).not.toContain('s3cret');
      await ctx.close();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('speaks TLS to a configured NATS with natsTls, and names the server when the CA is wrong', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'berth-ctx-'));
    const pki = await makeTestPki();
    const nats = await startNats({
      jetstream: false,
      tls: { ca: pki.ca, ...pki.server, verifyClients: true },
    });
    try {
      const file = join(dir, 'config.json');
      const withCa = async (ca: string) => {
        await writeFile(file, JSON.stringify({ natsUrl: nats.url, natsTls: { ca, ...pki.client } }));
        Object.assign(process.env, {
          BERTH_CONFIG: file,
          BERTH_STATE_ROOT: join(dir, 'state'),
          BERTH_RUN_ROOT: join(dir, 'run'),
        });
        return createContext();
      };
      const good = await withCa(pki.ca);
      const nc = await good.nats();
      expect(nc.info?.tls_required).toBe(true);
      await good.close();
      const bad = await withCa(pki.otherCa);
      const err = await bad.nats().then(
        () => undefined,
        (e: unknown) => e as { code: string; message: string },
      );
      expect(err?.code).toBe(Code.UNAVAILABLE);
      expect(err?.message).toMatch(
        new RegExp(
          `^cannot connect to NATS at ${nats.url} over TLS: the server's certificate is not signed by the CA in ${pki.otherCa} `,
        ),
      );
      await bad.close();
    } finally {
      await nats.stop();
      await pki.remove();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
