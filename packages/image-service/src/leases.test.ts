import { Code, ImageApi } from '@berth/api';
import { localClient } from '@berth/kit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hostPlatform } from './images/platform.js';
import { createHandlers } from './service.js';
import { type FixtureImage, fileTar, makeImage, makeLayer, uploadImage } from './testing/fixtures.js';
import { type ImageEnv, rejection, startImageEnv } from './testing/harness.js';

// Clients' leases (containerd's): what a lease holds survives rmi and gc until the lease ends.
let env: ImageEnv;
let img: FixtureImage;
const hex = (d: string) => d.slice(7);

beforeAll(async () => {
  env = await startImageEnv();
  img = makeImage([makeLayer(fileTar('leased', 'a leased layer'), 'gzip')], {
    arch: hostPlatform().architecture,
  });
  await uploadImage(env.registry.url, 'lease/a', 'v1', img);
});
afterAll(() => env?.stop());

const api = (ns: string) => localClient(ImageApi, createHandlers(env.service()), { namespace: ns });

describe('leases', () => {
  it('keeps leased content through rmi and gc, and lets it go when the lease is deleted', async () => {
    const c = api('lease-ns');
    const ref = `${env.registry.host}/lease/a:v1`;
    await c.pull({ ref, unpack: false });
    const lease = await c['lease-create']({ id: 'build-1', labels: { by: 'test' } });
    expect(lease).toMatchObject({
      id: 'build-1',
      namespace: 'lease-ns',
      labels: { by: 'test' },
      content: [],
    });
    const digests = [...img.blobs.keys()];
    const held = await c['lease-add']({ id: 'build-1', content: digests, snapshots: ['snap-of-build-1'] });
    expect(held.content).toEqual([...digests].sort());
    expect((await c['chain-roots']({})).leasedSnapshots).toContain('snap-of-build-1');

    await c.remove({ name: ref });
    for (const d of digests) expect(await env.blobFiles()).toContain(hex(d));

    await c['lease-delete']({ id: 'build-1' });
    expect((await c['chain-roots']({})).leasedSnapshots).not.toContain('snap-of-build-1');
    await c.gc({});
    for (const d of digests) expect(await env.blobFiles()).not.toContain(hex(d));
  });

  it('keeps leases per namespace, refuses a taken id and bad input, and ends them at expiry', async () => {
    const a = api('lease-a');
    const b = api('lease-b');
    await a['lease-create']({ id: 'mine' });
    expect((await rejection(a['lease-create']({ id: 'mine' }))).code).toBe(Code.ALREADY_EXISTS);
    expect((await b['lease-list']({})).leases).toEqual([]);
    const other = await rejection(b['lease-add']({ id: 'mine', content: [] }));
    expect(other.code).toBe(Code.NOT_FOUND);
    expect(other.message).toBe(`lease "mine" not found in namespace "lease-b" on node "${env.node}"`);
    const bad = await rejection(a['lease-add']({ id: 'mine', content: ['md5:x'] }));
    expect(bad.code).toBe(Code.INVALID_ARGUMENT);
    expect(bad.message).toContain('content.0');
    await a['lease-delete']({ id: 'mine' });

    const short = await a['lease-create']({ ttlMs: 1000 });
    expect((await a['lease-list']({})).leases.map((l) => l.id)).toEqual([short.id]);
    const end = Date.parse(short.expiresAt);
    while (Date.now() <= end) await new Promise((r) => setTimeout(r, end - Date.now() + 5));
    expect((await a['lease-list']({})).leases).toEqual([]);
    expect((await rejection(a['lease-add']({ id: short.id, snapshots: ['x'] }))).code).toBe(Code.NOT_FOUND);
    // The id of an expired lease is free again.
    expect((await a['lease-create']({ id: short.id })).id).toBe(short.id);
    await a['lease-delete']({ id: short.id });
  });
});
