import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BerthError, Service } from '@berth/api';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { snapshotSettings } from './settings.js';
import { type SnapshotEnv, startSnapshotEnv } from './testing/env.js';

// `usage` over NATS as its callers see it: the gateway's ListContainerStats (cached figures with
// their age) and `berth snapshot usage` (fresh). The period is an hour so that no background
// refresh lands between two asks here; usage-cache.test.ts drives the refresh itself.

let env: SnapshotEnv;
beforeAll(async () => {
  env = await startSnapshotEnv({ usageRefreshMs: 3_600_000 });
});
afterAll(async () => {
  await env?.stop();
});

describe('usage over NATS', () => {
  it('answers an active snapshot from the cache with its age, fresh on request, and committed ones as measured', async () => {
    const c = env.client;
    const before = Date.now();
    const { mounts } = await c.prepare({ key: 'ctr' });
    const upper = mounts[0]?.source as string;
    writeFileSync(join(upper, 'a'), 'a');
    const first = await c.usage({ key: 'ctr' });
    expect(first.inodes).toBe(2);
    const at = Date.parse(first.measuredAt ?? '');
    expect(at).toBeGreaterThanOrEqual(before);
    expect(at).toBeLessThanOrEqual(Date.now());

    writeFileSync(join(upper, 'b'), 'b');
    // Within the period: the figure of the first walk, and its time.
    expect(await c.usage({ key: 'ctr' })).toEqual(first);
    const fresh = await c.usage({ key: 'ctr', fresh: true });
    expect(fresh.inodes).toBe(3);
    expect(Date.parse(fresh.measuredAt ?? '')).toBeGreaterThanOrEqual(at);
    // The fresh walk's figure is the cached one from then on.
    expect(await c.usage({ key: 'ctr' })).toEqual(fresh);

    writeFileSync(join(upper, 'c'), 'c');
    await c.commit({ key: 'ctr', name: 'img' });
    // A commit measures the directory itself; a committed figure cannot age: no measuredAt.
    expect(await c.usage({ key: 'img' })).toEqual({ size: expect.any(Number), inodes: 4 });
    expect(await c.usage({ key: 'img', fresh: true })).toEqual(await c.usage({ key: 'img' }));
  });

  it('answers NOT_FOUND for a removed snapshot', async () => {
    const c = env.client;
    await c.prepare({ key: 'gone' });
    await c.usage({ key: 'gone' });
    await c.remove({ key: 'gone' });
    const err = await c.usage({ key: 'gone' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BerthError);
    expect((err as BerthError).code).toBe('NOT_FOUND');
  });

  it('refuses a refresh period or walk bound that is not a positive integer', () => {
    const config = (v: Record<string, unknown>) => ({ ...env.config, services: { [Service.snapshot]: v } });
    expect(snapshotSettings(config({}))).toMatchObject({ usageRefreshMs: 10_000, usageWalkConcurrency: 2 });
    expect(() => snapshotSettings(config({ usageRefreshMs: 0 }))).toThrow(/usageRefreshMs/);
    expect(() => snapshotSettings(config({ usageWalkConcurrency: 1.5 }))).toThrow(/usageWalkConcurrency/);
  });
});
