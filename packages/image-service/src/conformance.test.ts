// One suite, two implementations of the image-service interface: the domain object called
// in-process through its handlers, and the typed client over a real nats-server (the same handlers
// served by @berth/kit's serve).
// Both must give the same results and the same error codes.
import { Code, IMAGE_RECORD_MAX_BYTES, ImageApi, type ImageRecord } from '@berth/api';
import {
  type Client,
  client,
  collectAll,
  createLogger,
  localClient,
  type ServedService,
  serve,
} from '@berth/kit';
import { startNats, type TestServer } from '@berth/testing';
import { connect, type NatsConnection } from 'nats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hostPlatform } from './images/platform.js';
import { createHandlers } from './service.js';
import { fileTar, makeImage, makeLayer, uploadImage } from './testing/fixtures.js';
import { type ImageEnv, rejection, startImageEnv } from './testing/harness.js';

type Api = Client<typeof ImageApi>;

let env: ImageEnv;
let nats: TestServer;
let nc: NatsConnection;
let served: ServedService;
const img = makeImage([makeLayer(fileTar('c', 'conformance'), 'gzip')], {
  arch: hostPlatform().architecture,
  labels: { 'org.example.tier': 'test' },
});
const older = makeImage([makeLayer(fileTar('o', 'older'), 'gzip')], {
  arch: hostPlatform().architecture,
  created: '2020-06-01T00:00:00Z',
});

// A config far larger than images have: its record could not be sent back.
const huge = makeImage([makeLayer(fileTar('h', 'huge'), 'gzip')], {
  arch: hostPlatform().architecture,
  labels: { pad: 'x'.repeat(IMAGE_RECORD_MAX_BYTES) },
});

beforeAll(async () => {
  [env, nats] = await Promise.all([startImageEnv(), startNats({ jetstream: false })]);
  nc = await connect({ servers: nats.url });
  await uploadImage(env.registry.url, 'conf/img', 'v1', img);
  await uploadImage(env.registry.url, 'conf/old', 'v1', older);
  await uploadImage(env.registry.url, 'conf/huge', 'v1', huge);
  const svc = env.service();
  served = await serve({
    nc,
    service: ImageApi,
    version: '0.0.0-test',
    node: env.node,
    log: createLogger({ service: 'image-service', node: env.node, level: 'silent' }),
    handlers: createHandlers(svc),
  });
});
afterAll(async () => {
  await served?.stop(1000);
  await nc?.close();
  await Promise.all([env?.stop(), nats?.stop()]);
});

const impls: [string, (ns: string) => Api][] = [
  ['in-process', (ns) => localClient(ImageApi, createHandlers(env.service()), { namespace: ns })],
  ['over NATS', (ns) => client(nc, ImageApi, { node: env.node, namespace: ns })],
];

describe.each(impls)('image-service conformance: %s', (label, make) => {
  const ns = `conf-${label.replace(/\W/g, '')}`;

  it('pulls, gets by name and id, lists with filters, tags and removes', async () => {
    const api = make(ns);
    const ref = `${env.registry.host}/conf/img:v1`;
    const r = await api.pull({ ref, unpack: false });
    expect(r.image.manifest.digest).toBe(img.desc.digest);
    const u = await api.usage({});
    expect(u.blobs).toBeGreaterThanOrEqual(img.blobs.size + 1);
    expect(u.bytes).toBeGreaterThanOrEqual(
      [...img.blobs.values()].reduce((s, b) => s + b.length, img.manifest.length),
    );
    expect((await api.get({ name: ref })).name).toBe(ref);
    expect((await api.get({ name: r.image.configDigest.slice(7, 19) })).name).toBe(ref);
    await api.tag({ source: ref, target: 'conf/alias:1' });
    const all = await api.list({});
    expect(all.images.map((i: ImageRecord) => i.name).sort()).toEqual(['docker.io/conf/alias:1', ref].sort());
    const some = await api.list({ filters: ['reference=conf/*'] });
    expect(some.images.map((i: ImageRecord) => i.name)).toEqual(['docker.io/conf/alias:1']);
    expect((await api.list({ filters: ['dangling=false'] })).images).toHaveLength(2);
    expect((await api.list({ filters: ['dangling=true'] })).images).toEqual([]);
    expect((await api.list({ filters: ['label=berth.test.none'] })).images).toEqual([]);
    expect((await api.list({ filters: ['label=org.example.tier'] })).images).toHaveLength(2);
    expect(
      (await api.list({ filters: ['label=org.example.tier=test', 'reference=conf/*'] })).images,
    ).toHaveLength(1);
    expect((await api.list({ filters: ['label=org.example.tier=prod'] })).images).toEqual([]);
    const old = `${env.registry.host}/conf/old:v1`;
    await api.pull({ ref: old, unpack: false });
    const names = async (filters: string[]) =>
      (await api.list({ filters })).images.map((i: ImageRecord) => i.name).sort();
    expect(await names([`before=${ref}`])).toEqual([old]);
    expect(await names([`since=${old}`])).toEqual(['docker.io/conf/alias:1', ref].sort());
    expect(await names([`since=${ref}`])).toEqual([]);
    expect(await names([`before=${old}`])).toEqual([]);
    await api.remove({ name: old });
    const rm = await api.remove({ name: 'conf/alias:1' });
    expect(rm.removed).toEqual(['docker.io/conf/alias:1']);
    await api.remove({ name: ref });
    expect((await api.list({})).images).toEqual([]);
  });

  it('pages the list newest first, filters first, each name once', async () => {
    const api = make(`${ns}-pages`);
    const ref = `${env.registry.host}/conf/img:v1`;
    await api.pull({ ref, unpack: false });
    const tags = Array.from({ length: 12 }, (_, n) => `docker.io/conf/page:${String(n).padStart(2, '0')}`);
    for (const t of tags) await api.tag({ source: ref, target: t });
    const whole = await collectAll(api.list, {}, 'images');
    expect(whole.map((i) => i.name).sort()).toEqual([...tags, ref].sort());
    const times = whole.map((i) => i.updatedAt);
    expect(times).toEqual([...times].sort().reverse());
    const first = await api.list({ limit: 5 });
    expect(first.images).toEqual(whole.slice(0, 5));
    expect(first.nextCursor).toBeTypeOf('string');
    expect(await collectAll(api.list, { limit: 5 }, 'images')).toEqual(whole);
    const paged = await collectAll(api.list, { filters: ['reference=conf/page'], limit: 3 }, 'images');
    expect(paged.map((i) => i.name).sort()).toEqual(tags);
    expect((await rejection(api.list({ cursor: 'bogus' }))).code).toBe(Code.INVALID_ARGUMENT);
    for (const t of [...tags, ref]) await api.remove({ name: t, gc: false });
  });

  it('refuses an image whose record would be larger than a reply may be, keeping the list working', async () => {
    const api = make(`${ns}-huge`);
    const ref = `${env.registry.host}/conf/huge:v1`;
    const e = await rejection(api.pull({ ref, unpack: false }));
    expect(e.code).toBe(Code.INVALID_ARGUMENT);
    expect(e.message).toMatch(new RegExp(`is \\d+ bytes, over the limit of ${IMAGE_RECORD_MAX_BYTES} bytes`));
    expect((await rejection(api.get({ name: ref }))).code).toBe(Code.NOT_FOUND);
    expect((await api.list({})).images).toEqual([]);
  });

  it('answers the same error codes', async () => {
    const api = make(ns);
    expect((await rejection(api.get({ name: 'absent:v1' }))).code).toBe(Code.NOT_FOUND);
    expect((await rejection(api.pull({ ref: 'a//b' }))).code).toBe(Code.INVALID_ARGUMENT);
    expect((await rejection(api.list({ filters: ['dangling=maybe'] }))).code).toBe(Code.INVALID_ARGUMENT);
    expect((await rejection(api.list({ filters: ['size=1'] }))).code).toBe(Code.INVALID_ARGUMENT);
    expect((await rejection(api.list({ filters: ['before='] }))).code).toBe(Code.INVALID_ARGUMENT);
    const before = await rejection(api.list({ filters: ['before=absent:v1'] }));
    expect(before.code).toBe(Code.NOT_FOUND);
    expect(before.message).toContain('"docker.io/library/absent:v1"');
    expect((await rejection(api.import({ path: '/nonexistent.tar' }))).code).toBe(Code.NOT_FOUND);
    const e = await rejection(api.pull({ ref: `${env.registry.host}/conf/none:v1`, unpack: false }));
    expect(e.code).toBe(Code.NOT_FOUND);
    expect(e.message).toBe(`image "${env.registry.host}/conf/none:v1" not found: manifest unknown`);
  });
});
