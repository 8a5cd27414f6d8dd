// A snapshot-service SIGKILLed in the middle of an unpack: the pull that waits on it fails with
// UNAVAILABLE within seconds (heartbeats of long calls), not after the unpack's 30 min timeout;
// the extract snapshot it leaves is removed when the service starts again, and a retried pull
// resumes (the layers committed before the kill are skipped) and records the chainId.
import { execFileSync } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { chainIds, SnapshotApi, type SnapshotInfo, UNPACK_LABEL } from '@berth/api';
import { busyboxTar, fileTar, makeImage, makeLayer, uploadImage } from '@berth/image-service/testing';
import { call, keys } from '@berth/kit';
import { startRegistry, type TestServer } from '@berth/testing';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ContainerStack, startContainerStack, until } from './containers-stack.js';

const arch = process.arch === 'arm64' ? 'arm64' : 'amd64';
let stack: ContainerStack;
let registry: TestServer & { host: string };

/**
 * A layer that takes the unpacker a while for real: thousands of files (each one an open, write,
 * chmod, chown and utimes), 96 MiB in all, built with the host's tar.
 */
async function manyFilesTar(dir: string): Promise<Buffer> {
  const files = 6_000;
  const chunk = Buffer.alloc(16 * 1024, 7);
  for (let d = 0; d < 60; d++) {
    const sub = join(dir, 'data', String(d));
    await mkdir(sub, { recursive: true });
    for (let f = 0; f < files / 60; f++) await writeFile(join(sub, `f${f}`), chunk);
  }
  return execFileSync('tar', ['--numeric-owner', '--owner=0', '--group=0', '-C', dir, '-cf', '-', 'data'], {
    maxBuffer: 1024 ** 3,
  });
}

async function snapshots() {
  return (await call(stack.nc, SnapshotApi, 'list', {}, { node: stack.node, timeoutMs: 5_000 })).snapshots;
}

beforeAll(async () => {
  [stack, registry] = await Promise.all([
    // A short unpack lock ttl: the dead unpacker's lock blocks the retry that long.
    startContainerStack({
      only: ['image-service', 'snapshot-service'],
      config: { services: { 'snapshot-service': { unpackLockTtlMs: 3_000 } } },
    }),
    startRegistry(),
  ]);
}, 120_000);
afterAll(async () => {
  await stack?.stop();
  await registry?.stop();
});

describe('a snapshot-service killed mid-unpack', () => {
  it('fails the pull fast, leaves no orphan after its restart, and a retried pull resumes', async () => {
    const big = makeLayer(await manyFilesTar(join(stack.root, 'big')), 'gzip');
    const img = makeImage(
      [makeLayer(busyboxTar(), 'gzip'), big, makeLayer(fileTar('etc/last', 'last'), 'gzip')],
      { arch },
    );
    await uploadImage(registry.url, 'kill/unpack', 'v1', img);
    const ref = `${registry.host}/kill/unpack:v1`;
    const chain = chainIds(img.layers.map((l) => l.diffId));
    const bigChain = chain[1] as string;

    const pulling = stack.berth(['pull', ref], { timeoutMs: 120_000 });
    // Mid-unpack: the big layer's extract snapshot exists (its first layer is committed by then).
    // until() returns only a truthy value: the snapshot found.
    const extract = (await until(
      'the big layer to be unpacking',
      async () => (await snapshots()).find((s) => s.labels[UNPACK_LABEL] === bigChain),
      60_000,
    )) as SnapshotInfo;
    expect(extract.name).toMatch(/^extract-/);
    await stack.kill('snapshot-service', 'SIGKILL');
    const killedAt = Date.now();
    const r = await pulling;
    const noticedMs = Date.now() - killedAt;
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toContain('UNAVAILABLE');
    expect(r.stderr).toContain('snapshot-service');
    expect(r.stderr).toContain('"unpack"');
    // Within seconds of the kill, not the unpack's timeout.
    expect(noticedMs).toBeLessThan(20_000);
    const [rec] = JSON.parse((await stack.berth(['image', 'inspect', ref])).stdout) as { chainId?: string }[];
    expect(rec?.chainId).toBeUndefined();

    // The kill left the extract snapshot's record behind.
    const redis = new Redis(stack.redis.url);
    try {
      expect(await redis.exists(keys.snapshot(stack.node, extract.name))).toBe(1);
    } finally {
      redis.disconnect();
    }
    await stack.start('snapshot-service');
    // The restarted service removes it by itself: no rmi, no gc, no retry needed.
    await until(
      'the orphan extract snapshot to be removed',
      async () => !(await snapshots()).some((s) => s.name === extract.name),
      30_000,
    );
    expect((await snapshots()).map((s) => s.name)).toEqual([chain[0]]);

    const again = await stack.berth(['pull', ref], { timeoutMs: 120_000 });
    expect(again.code, again.stderr).toBe(0);
    const [done] = JSON.parse((await stack.berth(['image', 'inspect', ref])).stdout) as {
      chainId?: string;
    }[];
    expect(done?.chainId).toBe(chain[2]);
    const names = (await snapshots()).map((s) => s.name).sort();
    expect(names).toEqual([...chain].sort());
  }, 240_000);
});
