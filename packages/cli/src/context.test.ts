import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Code } from '@berth/api';
import { freePort } from '@berth/testing';
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
});
