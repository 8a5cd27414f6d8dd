import { Code } from '@berth/api';
import { startRegistry, type TestServer } from '@berth/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hostPlatform } from './images/platform.js';
import {
  type FixtureImage,
  fileTar,
  makeImage,
  makeIndex,
  makeLayer,
  uploadIndex,
} from './testing/fixtures.js';
import { type ImageEnv, rejection, startImageEnv } from './testing/harness.js';
import { type RegistryProxy, startProxy } from './testing/proxy.js';

const arch = hostPlatform().architecture;
const other = arch === 'amd64' ? 'arm64' : 'amd64';
let env: ImageEnv;
let second: TestServer & { host: string };
let img: FixtureImage;
let counter: RegistryProxy;

beforeAll(async () => {
  [env, second] = await Promise.all([startImageEnv(), startRegistry()]);
  img = makeImage([makeLayer(fileTar('a', 'push a'), 'gzip'), makeLayer(fileTar('b', 'push b'), 'zstd')], {
    arch,
  });
  const otherImg = makeImage([makeLayer(fileTar('o', other), 'gzip')], { arch: other });
  await uploadIndex(
    env.registry.url,
    'src/app',
    'v1',
    [img, otherImg],
    makeIndex([
      { image: img, arch },
      { image: otherImg, arch: other },
    ]),
  );
  counter = await startProxy({ upstream: second.url });
});
afterAll(async () => {
  await counter?.stop();
  await Promise.all([env?.stop(), second?.stop()]);
});

describe('push', () => {
  it('uploads every blob to a new registry, then only what is missing', async () => {
    const svc = env.service();
    const src = `${env.registry.host}/src/app:v1`;
    await svc.pull({ ref: src, unpack: false }, 'default');
    const dest = `${counter.host}/dst/app:v1`;
    const r = await svc.push({ name: src, ref: dest }, 'default');
    // Only the host platform was pulled, so its manifest is what goes out.
    expect(r).toMatchObject({
      ref: dest,
      digest: img.desc.digest,
      uploaded: img.blobs.size,
      mounted: 0,
      existing: 0,
    });
    expect(counter.count('PUT', '/blobs/uploads/')).toBe(img.blobs.size);
    const again = await svc.push({ name: src, ref: dest }, 'default');
    expect(again).toMatchObject({ uploaded: 0, existing: img.blobs.size });
    // What the registry now serves pulls back to the same image.
    const back = await env.service().pull({ ref: dest, unpack: false }, 'check');
    expect(back.image.manifest.digest).toBe(img.desc.digest);
  });

  it('mounts blobs from the source repository on the same registry', async () => {
    const svc = env.service();
    const src = `${env.registry.host}/src/app:v1`;
    await svc.pull({ ref: src, unpack: false }, 'm');
    await svc.tag('m', { source: src, target: `${env.registry.host}/other/app:v2` });
    const r = await svc.push({ name: `${env.registry.host}/other/app:v2` }, 'm');
    expect(r).toMatchObject({ mounted: img.blobs.size, uploaded: 0 });
  });

  it('pushes through a bearer token server with push scope, and fails UNAUTHENTICATED without credentials', async () => {
    const svc = env.service();
    const src = `${env.registry.host}/src/app:v1`;
    await svc.pull({ ref: src, unpack: false }, 'b');
    const front = await startProxy({ upstream: second.url, bearer: { users: { carol: 'pw' } } });
    try {
      const dest = `${front.host}/tok/app:v1`;
      const e = await rejection(svc.push({ name: src, ref: dest }, 'b'));
      expect(e.code).toBe(Code.UNAUTHENTICATED);
      expect(e.message).toContain(`"${dest}"`);
      const r = await svc.push({ name: src, ref: dest, auth: { username: 'carol', password: 'pw' } }, 'b');
      expect(r.digest).toBe(img.desc.digest);
    } finally {
      await front.stop();
    }
  });

  it('refuses an image that is not here', async () => {
    const e = await rejection(env.service().push({ name: 'absent:v1' }, 'default'));
    expect(e.code).toBe(Code.NOT_FOUND);
  });
});
