// `berth pull` with unpacking: the image-service hands the layers to a real snapshot-service,
// stores the chainId it returns, and `berth rmi` removes the image, its blobs and its snapshots,
// keeping what another image shares.
import { createHash } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { busyboxTar, fileTar, makeImage, makeLayer, uploadImage } from '@berth/image-service/testing';
import { startRegistry, type TestServer } from '@berth/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ContainerStack, startContainerStack } from './containers-stack.js';

const arch = process.arch === 'arm64' ? 'arm64' : 'amd64';
let stack: ContainerStack;
let registry: TestServer & { host: string };
const img = makeImage(
  [
    makeLayer(busyboxTar(), 'gzip'),
    makeLayer(fileTar('etc/zstd', 'z'), 'zstd'),
    makeLayer(fileTar('etc/plain', 'p'), 'none'),
  ],
  { arch },
);
// Two images sharing their first layer (the same blob, so the same base snapshot).
const base = makeLayer(busyboxTar(), 'gzip');
const shareA = makeImage([base, makeLayer(fileTar('etc/a', 'only in a'), 'gzip')], { arch });
const shareB = makeImage([base, makeLayer(fileTar('etc/b', 'only in b'), 'zstd')], { arch });
/** The chainID of the two layers of an image (image-spec: sha256 of "parent diffid"). */
const top = (i: typeof shareA) =>
  `sha256:${createHash('sha256').update(`${base.diffId} ${i.layers[1]?.diffId}`).digest('hex')}`;

beforeAll(async () => {
  [stack, registry] = await Promise.all([
    startContainerStack({ only: ['image-service', 'snapshot-service', 'task-service'] }),
    startRegistry(),
  ]);
  await uploadImage(registry.url, 'unpack/bb', 'v1', img);
  await uploadImage(registry.url, 'unpack/shared', 'a', shareA);
  await uploadImage(registry.url, 'unpack/shared', 'b', shareB);
});
afterAll(async () => {
  await stack?.stop();
  await registry?.stop();
});

describe('berth pull with unpack', () => {
  it('unpacks gzip, zstd and plain layers and records the chainId', async () => {
    const ref = `${registry.host}/unpack/bb:v1`;
    const r = await stack.berth(['pull', ref]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const [rec] = JSON.parse((await stack.berth(['image', 'inspect', ref])).stdout) as { chainId?: string }[];
    expect(rec?.chainId).toMatch(/^sha256:[a-f0-9]{64}$/);
    const snaps = await stack.berth(['snapshot', 'ls']);
    expect(snaps.stdout).toContain(rec?.chainId);

    const rm = await stack.berth(['rmi', ref]);
    expect(rm.code).toBe(0);
    expect(await readdir(join(stack.stateRoot, 'content', 'blobs', 'sha256')).catch(() => [])).toEqual([]);
    // The snapshots it leaves behind are checked in the next test, with an image that shares some.
  });

  it('rmi collects the snapshots and blobs only that image used; shared ones go with the last image', async () => {
    const a = `${registry.host}/unpack/shared:a`;
    const b = `${registry.host}/unpack/shared:b`;
    for (const ref of [a, b]) {
      const r = await stack.berth(['pull', ref]);
      expect(r.code, r.stderr).toBe(0);
    }
    const snapshots = async () =>
      (await stack.berth(['snapshot', 'ls', '-q'])).stdout.trim().split('\n').filter(Boolean).sort();
    const blobs = async () =>
      (await readdir(join(stack.stateRoot, 'content', 'blobs', 'sha256')).catch(() => [] as string[]))
        .map((h) => `sha256:${h}`)
        .sort();
    expect(await snapshots()).toEqual([base.diffId, top(shareA), top(shareB)].sort());

    const rmA = await stack.berth(['rmi', a]);
    expect(rmA.code, rmA.stderr).toBe(0);
    expect(await snapshots()).toEqual([base.diffId, top(shareB)].sort());
    expect(await blobs()).toEqual([shareB.desc.digest, ...shareB.blobs.keys()].sort());
    // What is left still mounts and shows b's files over the shared base.
    const dir = join(stack.root, 'mnt-shared');
    const m = await stack.berth(['mount', b, dir]);
    expect(m.code, m.stderr).toBe(0);
    try {
      expect((await readdir(join(dir, 'etc'))).sort()).toEqual(['b']);
      expect(await readdir(join(dir, 'bin'))).toContain('busybox');
    } finally {
      expect((await stack.berth(['unmount', dir])).code).toBe(0);
    }

    const rmB = await stack.berth(['rmi', b]);
    expect(rmB.code, rmB.stderr).toBe(0);
    expect(await snapshots()).toEqual([]);
    expect(await blobs()).toEqual([]);
  });
});
