// One suite, two implementations of the snapshot-service interface: its handlers called in-process
// (localClient) and the typed client over a real nats-server (the same handlers served by the
// kit). Both must give the same results and the same error codes, as containerd's snapshotter
// suite runs against every snapshotter.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BerthError, chainIds, SnapshotApi } from '@berth/api';
import { type Client, collectAll, createLogger, localClient } from '@berth/kit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createService, type SnapshotService } from './service.js';
import { type SnapshotEnv, startSnapshotEnv } from './testing/env.js';
import { putLayer } from './testing/oci.js';

let env: SnapshotEnv;
beforeAll(async () => {
  env = await startSnapshotEnv();
});
afterAll(async () => {
  await inProcessService?.close();
  await env?.stop();
});

async function code(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    if (err instanceof BerthError) return err.code;
    throw err;
  }
  return 'OK';
}

// One in-process instance (its start-up cleanup runs once, as a replica's would).
let local: Client<typeof SnapshotApi> | undefined;
let inProcessService: SnapshotService | undefined;
const inProcess = () => {
  inProcessService ??= createService({
    config: env.config,
    log: createLogger({ service: 'snapshot-service', node: env.node, level: 'silent' }),
    nc: env.nc,
    redis: env.redis,
    node: env.node,
    layout: env.layout,
  });
  local ??= localClient(SnapshotApi, inProcessService.handlers);
  return local;
};

const impls: [string, () => Client<typeof SnapshotApi>][] = [
  ['in-process', inProcess],
  ['over NATS', () => env.client],
];

describe.each(impls)('snapshot-service conformance: %s', (label, make) => {
  const p = label.replace(/\W/g, '');

  it('prepares, commits, views, labels, lists, measures and removes', async () => {
    const c = make();
    const a = await c.prepare({ key: `${p}-a`, labels: { tier: 'x' } });
    expect(a.mounts).toHaveLength(1);
    writeFileSync(join(a.mounts[0]?.source as string, 'f'), 'data');
    expect(await c.commit({ name: `${p}-base`, key: `${p}-a` })).toMatchObject({
      name: `${p}-base`,
      kind: 'committed',
      labels: { tier: 'x' },
    });
    const v = await c.view({ key: `${p}-v`, parent: `${p}-base` });
    expect(v.mounts[0]?.options).toContain('ro');
    expect((await c.mounts({ key: `${p}-v` })).mounts).toEqual(v.mounts);
    expect(await c.update({ key: `${p}-base`, labels: { tier: 'y' } })).toMatchObject({
      labels: { tier: 'y' },
    });
    expect((await c.stat({ key: `${p}-v` })).parent).toBe(`${p}-base`);
    const listed = (await c.list({ filters: [`parent==${p}-base`] })).snapshots.map((s) => s.name);
    expect(listed).toEqual([`${p}-v`]);
    expect((await c.usage({ key: `${p}-base` })).inodes).toBe(2);
    await c.remove({ key: `${p}-v` });
    await c.remove({ key: `${p}-base` });
    expect((await c.list({ filters: [`name==${p}-base`] })).snapshots).toEqual([]);
  });

  it('unpacks layers into committed snapshots named by chainID', async () => {
    const c = make();
    const l1 = putLayer(env.layout.content.blobs, [
      { name: `${p}-one`, type: 'file', data: Buffer.from('1') },
    ]);
    const l2 = putLayer(env.layout.content.blobs, [
      { name: `${p}-two`, type: 'file', data: Buffer.from('2') },
    ]);
    const r = await c.unpack({ layers: [l1.descriptor, l2.descriptor], diffIds: [l1.diffId, l2.diffId] });
    expect(r.chainId).toBe(chainIds([l1.diffId, l2.diffId])[1]);
    expect(r.applied + r.skipped).toBe(2);
    expect((await c.stat({ key: r.chainId })).kind).toBe('committed');
  });

  it('answers the same error codes', async () => {
    const c = make();
    expect(await code(c.stat({ key: `${p}-missing` }))).toBe('NOT_FOUND');
    expect(await code(c.prepare({ key: `${p}-orphan`, parent: `${p}-no-parent` }))).toBe('NOT_FOUND');
    await c.prepare({ key: `${p}-dup` });
    expect(await code(c.prepare({ key: `${p}-dup` }))).toBe('ALREADY_EXISTS');
    expect(await code(c.commit({ name: `${p}-from-view`, key: `${p}-missing` }))).toBe('NOT_FOUND');
    await c.commit({ name: `${p}-parent`, key: `${p}-dup` });
    await c.prepare({ key: `${p}-child`, parent: `${p}-parent` });
    expect(await code(c.remove({ key: `${p}-parent` }))).toBe('FAILED_PRECONDITION');
    expect(await code(c.prepare({ key: '' }))).toBe('INVALID_ARGUMENT');
    expect(await code(c.list({ filters: ['colour==red'] }))).toBe('INVALID_ARGUMENT');
    await c.remove({ key: `${p}-child` });
    await c.remove({ key: `${p}-parent` });
  });

  it('pages the list by name, filters first, each snapshot once', async () => {
    const c = make();
    const names = Array.from({ length: 25 }, (_, n) => `${p}-page-${String(n).padStart(2, '0')}`);
    for (const [n, key] of names.entries()) {
      await c.prepare({ key, labels: n % 2 === 0 ? { even: 'yes' } : {} });
    }
    const first = await c.list({ filters: [`labels.even==yes`], limit: 5 });
    expect(first.snapshots).toHaveLength(5);
    expect(first.nextCursor).toBeTypeOf('string');
    const even = names.filter((_, n) => n % 2 === 0);
    const listed = await collectAll(c.list, { filters: ['labels.even==yes'], limit: 5 }, 'snapshots');
    expect(listed.map((x) => x.name).filter((x) => x.startsWith(`${p}-page-`))).toEqual(even);
    const all = await collectAll(c.list, { limit: 4 }, 'snapshots');
    expect(all.map((x) => x.name).filter((x) => x.startsWith(`${p}-page-`))).toEqual(names);
    expect(new Set(all.map((x) => x.name)).size).toBe(all.length);
    expect(await code(c.list({ cursor: 'bogus' }))).toBe('INVALID_ARGUMENT');
    for (const key of names) await c.remove({ key });
  });
});
