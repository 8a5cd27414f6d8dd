// `berth pull` with unpacking: the image-service hands the layers to a real snapshot-service,
// stores the chainId it returns, and `berth rmi` removes the image and its blobs.
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

beforeAll(async () => {
  [stack, registry] = await Promise.all([
    startContainerStack({ only: ['image-service', 'snapshot-service'] }),
    startRegistry(),
  ]);
  await uploadImage(registry.url, 'unpack/bb', 'v1', img);
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
    // Snapshots are the snapshot-service's to collect (after its grace period), not checked here.
  });
});
