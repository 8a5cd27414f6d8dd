// A full disk under the snapshots, on a small tmpfs: an unpack fails with RESOURCE_EXHAUSTED naming
// the file it could not write, its extract snapshot is removed at once, the service keeps serving,
// and the same unpack succeeds once space is freed. A prepare without a free inode fails the same way.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, statfsSync } from 'node:fs';
import { BerthError, Code, chainIds } from '@berth/api';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type SnapshotEnv, startSnapshotEnv } from '../testing/env.js';
import { type FixtureLayer, putLayer } from '../testing/oci.js';

const MiB = 1024 * 1024;
let env: SnapshotEnv;
let root: string;
let small: FixtureLayer;
let big: FixtureLayer;
let mounted = false;

async function rejection(p: Promise<unknown>): Promise<BerthError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof BerthError) return err;
    throw err;
  }
  throw new Error('expected a rejection, but the promise resolved');
}

beforeAll(async () => {
  env = await startSnapshotEnv();
  root = env.layout.snapshots;
  mkdirSync(root, { recursive: true });
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=8m,mode=0711', 'berth-test', root]);
  mounted = true;
  const blobs = env.layout.content.blobs;
  small = putLayer(
    blobs,
    [{ name: 'etc/hello', type: 'file', mode: 0o644, data: Buffer.from('hi') }],
    'none',
  );
  // 12 MiB that no filesystem compresses: more than the 8 MiB the snapshots have.
  big = putLayer(
    blobs,
    [
      { name: 'big/', type: 'dir', mode: 0o755 },
      { name: 'big/data', type: 'file', mode: 0o644, data: randomBytes(12 * MiB) },
    ],
    'none',
  );
});
afterAll(async () => {
  if (mounted) execFileSync('umount', ['-l', root]);
  await env?.stop();
});

const request = () => ({
  layers: [small.descriptor, big.descriptor],
  diffIds: [small.diffId, big.diffId],
});

describe('a full disk under the snapshot-service', () => {
  it('fails an unpack with RESOURCE_EXHAUSTED naming the file, and removes the extract snapshot at once', async () => {
    const err = await rejection(env.client.unpack(request()));
    expect(err.code).toBe(Code.RESOURCE_EXHAUSTED);
    expect(err.message).toContain(`layer ${big.descriptor.digest}`);
    expect(err.message).toMatch(
      new RegExp(`cannot write ${root}/\\d+/fs/big/data: no space left on device \\(ENOSPC\\)`),
    );
    const [first] = chainIds(request().diffIds);
    // Only the first layer's committed snapshot is left: no extract snapshot, no directory of one.
    const names = (await env.client.list({})).snapshots.map((s) => `${s.name} ${s.kind}`);
    expect(names).toEqual([`${first} committed`]);
    expect(readdirSync(root)).toHaveLength(1);
    expect(statfsSync(root).bavail).toBeGreaterThan(7 * 256);
  });

  it('unpacks once space is freed', async () => {
    execFileSync('mount', ['-o', 'remount,size=64m', root]);
    const r = await env.client.unpack(request());
    expect(r).toEqual({ chainId: chainIds(request().diffIds)[1], applied: 1, skipped: 1 });
  });

  it('fails a prepare with RESOURCE_EXHAUSTED naming its directory when no inode is free', async () => {
    const { files, ffree } = statfsSync(root);
    execFileSync('mount', ['-o', `remount,nr_inodes=${files - ffree}`, root]);
    const err = await rejection(
      env.client.prepare({ key: 'no-inode', parent: chainIds(request().diffIds)[1] }),
    );
    expect(err.code).toBe(Code.RESOURCE_EXHAUSTED);
    expect(err.message).toMatch(new RegExp(`snapshot "no-inode": cannot write ${root}/new-\\d+-`));
    expect(err.message).toContain('nothing was created');
    expect(readdirSync(root).filter((n) => n.startsWith('new-'))).toEqual([]);
    expect((await env.client.list({})).snapshots.map((s) => s.name)).not.toContain('no-inode');
  });
});
