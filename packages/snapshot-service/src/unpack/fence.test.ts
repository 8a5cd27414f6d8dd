import { spawnSync } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { open, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { BerthError, Code, type Descriptor, MediaType, SnapshotKind } from '@berth/api';
import {
  connectRedis,
  createLogger,
  type Fence,
  keys,
  type Lock,
  type Redis,
  tryLock,
  withLock,
} from '@berth/kit';
import { startRedis, type TestServer, tempDir } from '@berth/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Snapshotter } from '../snapshots/snapshotter.js';
import { DIFF_ID_LABEL, Unpacker } from './unpacker.js';

// An unpack whose chainID lock expires mid-layer must stop, remove its extract snapshot and commit
// nothing, and the next holder's snapshot must stand. Real Redis, real files; the layer of the
// first writer comes through a FIFO the test writes, so the test holds it paused mid-stream.

let server: TestServer;
let redis: Redis;
let root: string;
let sn: Snapshotter;
const node = `t${randomUUID().slice(0, 8)}`;
const log = createLogger({ service: 'snapshot-fence-test', node, level: 'silent' });
const sha = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

beforeAll(async () => {
  server = await startRedis({ appendonly: false });
  redis = connectRedis(server.url);
  await redis.connect();
  root = await tempDir('snap-fence');
  sn = new Snapshotter(redis, node, join(root, 'snapshots'));
});
afterAll(async () => {
  redis?.disconnect();
  await server?.stop();
  if (root) await rm(root, { recursive: true, force: true });
});

/** A plain layer tar made by GNU tar: one file of `size` bytes of `fill`. */
function layerTar(name: string, size: number, fill: number): Buffer {
  const dir = join(root, `src-${randomUUID()}`);
  mkdirSync(dir);
  writeFileSync(join(dir, name), Buffer.alloc(size, fill));
  const r = spawnSync('tar', ['--numeric-owner', '-C', dir, '-cf', '-', name], { maxBuffer: 1 << 26 });
  expect(r.status, r.stderr?.toString()).toBe(0);
  return r.stdout;
}

function unpacker(blobsDir: string): Unpacker {
  return new Unpacker({
    snapshotter: sn,
    blobsDir,
    maxLayerUncompressedBytes: 1 << 30,
    lockWaitMs: 10_000,
    lockTtlMs: 2000,
    log,
  });
}

/** Waits for a condition to hold (checked every 20 ms, failing after 10 s). */
async function until(what: string, cond: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const extracts = async () => (await sn.store.all()).filter((r) => r.name.startsWith('extract-'));

describe('an unpack whose lock expires mid-layer', () => {
  it('stops at once, removes its extract snapshot, commits nothing, and the next holder commits', async () => {
    const tar = layerTar('big.bin', 4 << 20, 0x61);
    const desc: Descriptor = { mediaType: MediaType.ociLayer, digest: sha(tar), size: tar.length };
    const chainId = sha(tar); // one layer: its chainID is its DiffID
    const hex = desc.digest.slice(7);
    // Writer A reads its layer from a FIFO the test writes; B reads the real blob.
    const dirA = join(root, 'blobs-a');
    const dirB = join(root, 'blobs-b');
    mkdirSync(dirA);
    mkdirSync(dirB);
    expect(spawnSync('mkfifo', [join(dirA, hex)]).status).toBe(0);
    writeFileSync(join(dirB, hex), tar);

    const pA = unpacker(dirA)
      .unpack({ layers: [desc], diffIds: [chainId] })
      .catch((e: unknown) => e);
    const fifo = await open(join(dirA, hex), 'w');
    try {
      // Half the layer, then the stream pauses: A has written part of big.bin into its snapshot.
      await fifo.write(tar.subarray(0, 1 << 20));
      const [extract] = await extracts();
      expect(extract?.kind).toBe(SnapshotKind.active);
      const dir = join(root, 'snapshots', extract?.id ?? '');
      await until('A wrote part of the layer', async () => existsSync(join(dir, 'fs', 'big.bin')));

      // The lock's key expires in Redis (its ttl cut short, as a holder stalled past it would see).
      await redis.pexpire(keys.unpackLock(node, chainId), 1);
      // A's next renewal finds the key gone: the paused apply stops and its snapshot goes.
      const e = (await pA) as BerthError;
      expect(e).toBeInstanceOf(BerthError);
      expect(e.code).toBe(Code.ABORTED);
      expect(e.message).toContain(`lost the lock on unpack of snapshot ${chainId}: it expired`);
      expect(await extracts()).toEqual([]);
      expect(existsSync(dir)).toBe(false);
      expect(await sn.store.get(chainId)).toBeUndefined();
    } finally {
      await fifo.close();
    }

    const r = await unpacker(dirB).unpack({ layers: [desc], diffIds: [chainId] });
    expect(r).toEqual({ chainId, applied: 1, skipped: 0 });
    const done = await sn.store.must(chainId);
    expect(done.kind).toBe(SnapshotKind.committed);
    expect(done.labels[DIFF_ID_LABEL]).toBe(chainId);
    expect(readFileSync(join(sn.fsDir(done.id), 'big.bin')).equals(Buffer.alloc(4 << 20, 0x61))).toBe(true);
  });
});

describe('the commit of an unpacked layer', () => {
  /**
   * A takes the chainID lock (tryLock: never renewed, as if its process stalled) and fills its
   * extract snapshot; the lock expires, B takes it and fills its own; A, unaware, commits with
   * `fence(stale)`, then B commits. Returns both outcomes and whose file the snapshot holds.
   */
  async function staleCommit(fence: (stale: Lock) => Fence | undefined) {
    const chainId = sha(Buffer.from(randomUUID()));
    const lockKey = keys.unpackLock(node, chainId);
    const outcome = (p: Promise<unknown>) =>
      p.then(
        () => 'committed',
        (e: BerthError) => `${e.code}: ${e.message}`,
      );
    const fill = async (who: string) => {
      const c = await sn.create(SnapshotKind.active, { key: `extract-${who} ${chainId}` });
      writeFileSync(join(c.fs, 'who'), who);
    };
    const stale = (await tryLock(redis, lockKey, 300)) as Lock;
    await fill('a');
    let a = '';
    const b = await withLock(redis, lockKey, { ttlMs: 5000, waitMs: 10_000, what: 'b' }, async (lock) => {
      await fill('b');
      a = await outcome(sn.commit({ name: chainId, key: `extract-a ${chainId}` }, fence(stale)));
      return outcome(sn.commit({ name: chainId, key: `extract-b ${chainId}` }, lock));
    });
    const rec = await sn.store.must(chainId);
    return { a, b, holds: readFileSync(join(sn.fsDir(rec.id), 'who'), 'utf8') };
  }

  it('refuses a holder whose lock expired and was taken, so the next holder snapshot stands', async () => {
    const r = await staleCommit((stale) => stale);
    expect(r.a).toMatch(/^ABORTED: lost the lock on snapshot "sha256:\w+" before the commit/);
    expect(r).toMatchObject({ b: 'committed', holds: 'b' });
  });

  it('(control) the same commit without the fence lands and the next holder loses', async () => {
    const r = await staleCommit(() => undefined);
    expect(r.a).toBe('committed');
    expect(r.b).toMatch(/^ALREADY_EXISTS/);
    expect(r.holds).toBe('a');
  });
});
