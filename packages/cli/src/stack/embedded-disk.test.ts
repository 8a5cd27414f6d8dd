// The embedded redis-server, run with berth up's own command line on a small tmpfs: a full state
// disk must not leave it refusing writes once space is back (MISCONF after a failed RDB snapshot
// lasted until the next snapshot, up to an hour), while its AOF keeps every write durable.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Code } from '@berth/api';
import { storeRefusal } from '@berth/kit';
import { freePort } from '@berth/testing';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { embeddedSpec, waitEmbeddedReady } from './embedded.js';
import { embeddedConfigText } from './embedded-config.js';
import type { EmbeddedPlan } from './plan.js';

let dir: string;
let dataDir: string;
let proc: ChildProcess | undefined;
let redis: Redis;
let mounted = false;

/** One field of INFO persistence. */
async function persistence(field: string): Promise<string | undefined> {
  const info = await redis.info('persistence');
  return new RegExp(`^${field}:(\\S+)`, 'm').exec(info)?.[1];
}

/** Polls INFO until `field` has `value`: Redis retries a failed AOF write once a second. */
async function until(field: string, value: string, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  while ((await persistence(field)) !== value) {
    if (Date.now() > deadline) throw new Error(`${field} never became ${value}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'berth-embedded-disk-'));
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=8m', 'berth-test', dir]);
  mounted = true;
  dataDir = join(dir, 'embedded', 'redis');
  const plan: EmbeddedPlan = {
    kind: 'redis-server',
    port: await freePort(),
    dataDir,
    logFile: join(dir, 'redis.log'),
    auth: { password: 'test-password' },
    config: embeddedConfigText({ kind: 'redis-server' }, { password: 'test-password' }),
  };
  const spec = embeddedSpec(plan, 'disk-test', process.env);
  proc = spawn(spec.command, spec.args, { stdio: 'ignore' });
  await waitEmbeddedReady(plan, proc);
  redis = new Redis({
    host: '127.0.0.1',
    port: plan.port,
    password: 'test-password',
    maxRetriesPerRequest: 1,
  });
});
afterAll(async () => {
  redis?.disconnect();
  if (proc && proc.exitCode === null) {
    const exited = once(proc, 'exit');
    proc.kill('SIGKILL');
    await exited;
  }
  if (mounted) execFileSync('umount', ['-l', dir]);
  await rm(dir, { recursive: true, force: true });
});

describe('embedded redis-server on a full state disk', () => {
  it('accepts writes again as soon as space is freed, even after a failed snapshot', async () => {
    expect(await redis.set('before', '1')).toBe('OK');
    // Fill the disk: the filler takes what it can, then AOF writes and snapshots fail.
    const filler = join(dir, 'filler');
    await writeFile(filler, Buffer.alloc(8 * 1024 * 1024)).catch(() => undefined);
    await redis.set('while-full', 'x'.repeat(64 * 1024)).catch(() => undefined);
    await until('aof_last_write_status', 'err');
    await redis.bgsave().catch(() => undefined);
    await until('rdb_bgsave_in_progress', '0');
    expect(await persistence('rdb_last_bgsave_status')).toBe('err');
    // While full, writes are refused: Redis cannot make them durable. Services answer that as
    // RESOURCE_EXHAUSTED (kit's storeRefusal), not INTERNAL.
    const refused = await redis.set('refused', '1').then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(String(refused)).toMatch(/MISCONF/);
    expect(storeRefusal(refused)?.code).toBe(Code.RESOURCE_EXHAUSTED);

    await rm(filler);
    await until('aof_last_write_status', 'ok');
    expect(await redis.set('after', '1')).toBe('OK');
    expect(await redis.get('before')).toBe('1');
  });
});
