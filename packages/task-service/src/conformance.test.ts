// One suite, two implementations of the task-service interface: its handlers in-process
// (localClient) and the typed client over a real nats-server, on one real Redis. No node service
// runs: every case here must be answered by the task-service itself, the same way on both.
import { randomBytes } from 'node:crypto';
import {
  BERTH_VERSION,
  CONTAINER_RECORD_MAX_BYTES,
  type Container,
  type ListContainersRequest,
  PAGE_MAX_BYTES,
  Service,
  TaskApi,
} from '@berth/api';
import {
  type Client,
  client as clientOf,
  collectAll,
  connectRedis,
  createLogger,
  localClient,
  type Redis,
  type ServedService,
  serve,
} from '@berth/kit';
import { startNats, startRedis, type TestServer } from '@berth/testing';
import { connect, type NatsConnection } from 'nats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { natsDeps } from './deps.js';
import { createDomain, type Domain } from './domain.js';
import { createHandlers } from './service.js';

let nats: TestServer;
let redisServer: TestServer;
let redis: Redis;
let nc: NatsConnection;
let served: ServedService;
let domain: Domain;
const node = `n-${randomBytes(3).toString('hex')}`;
const log = createLogger({ service: Service.task, node, level: 'silent' });

beforeAll(async () => {
  [nats, redisServer] = await Promise.all([startNats({ jetstream: false }), startRedis()]);
  redis = connectRedis(redisServer.url);
  await redis.connect();
  nc = await connect({ servers: nats.url });
  domain = createDomain({ redis, deps: natsDeps(nc), env: { node }, log });
  served = await serve({
    nc,
    service: TaskApi,
    version: BERTH_VERSION,
    node,
    log,
    handlers: createHandlers(domain),
  });
});
afterAll(async () => {
  await served?.stop(1000);
  await nc?.close();
  await redis?.quit();
  await Promise.all([nats?.stop(), redisServer?.stop()]);
});

/** A container record as the task-service stores one (no node service is needed to read it). */
function stored(
  ns: string,
  name: string,
  labels: Record<string, string> = {},
  now = new Date().toISOString(),
): Container {
  const id = randomBytes(32).toString('hex');
  return {
    id,
    namespace: ns,
    name,
    image: { name: 'docker.io/library/busybox:latest', digest: `sha256:${'1'.repeat(64)}` },
    node,
    spec: { process: { args: ['true'], env: [], cwd: '/' } },
    snapshotKey: `containers/${ns}/${id}`,
    labels,
    runtime: { name: 'io.berth.runc' },
    io: { terminal: false, stdin: false },
    stopSignal: 'SIGTERM',
    config: { image: 'busybox' },
    createdAt: now,
    updatedAt: now,
  };
}

const impls: [string, (ns: string) => Client<typeof TaskApi>][] = [
  ['in-process', (ns) => localClient(TaskApi, createHandlers(domain), { namespace: ns })],
  ['over NATS', (ns) => clientOf(nc, TaskApi, { namespace: ns })],
];

describe.each(impls)('task-service conformance: %s', (label, make) => {
  const ns = `conf-${label.replace(/\W/g, '')}`;

  it('gets by id, prefix and name; lists with filters; merges labels', async () => {
    const c = make(ns);
    const a = stored(ns, 'web', { tier: 'front' });
    const b = stored(ns, 'db', { tier: 'back' });
    for (const x of [a, b]) {
      await domain.store.reserveName(ns, x.name, x.id);
      await domain.store.put(x);
    }
    expect((await c['get-container']({ id: 'web' })).container.id).toBe(a.id);
    expect((await c['get-container']({ id: a.id.slice(0, 12) })).container.name).toBe('web');
    expect((await c['get-container']({ id: a.id })).status).toBe('created');
    const names = async (req: Parameters<(typeof c)['list-containers']>[0]) =>
      (await c['list-containers'](req)).containers.map((i) => i.container.name).sort();
    expect(await names({})).toEqual(['db', 'web']);
    expect(await names({ labels: { tier: 'back' } })).toEqual(['db']);
    expect(await names({ labels: { tier: '' } })).toEqual(['db', 'web']);
    expect(await names({ name: 'web' })).toEqual(['web']);
    expect(await names({ status: ['running'] })).toEqual([]);
    expect(await names({ images: [`sha256:${'1'.repeat(64)}`], node })).toEqual(['db', 'web']);
    const up = await c['update-container']({ id: 'web', labels: { tier: '', owner: 'me' } });
    expect(up.labels).toEqual({ owner: 'me' });
  });

  it('answers the same error codes, naming what was wrong', async () => {
    const c = make(ns);
    const nf = { code: 'NOT_FOUND', message: 'container "nope" not found' };
    await expect(c['get-container']({ id: 'nope' })).rejects.toMatchObject(nf);
    await expect(c.kill({ id: 'nope' })).rejects.toMatchObject(nf);
    await expect(c.start({ id: 'nope' })).rejects.toMatchObject(nf);
    await expect(c.state({ id: 'nope' })).rejects.toMatchObject(nf);
    await expect(c.exec({ id: 'nope', execId: 'e1', args: ['true'] })).rejects.toMatchObject(nf);
    const invalid = { code: 'INVALID_ARGUMENT' };
    await expect(
      c['create-container']({ image: 'x', resources: { memoryBytes: 1024 } }),
    ).rejects.toMatchObject(invalid);
    await expect(c['create-container']({ image: 'x', name: '-bad name' })).rejects.toMatchObject(invalid);
    await expect(c['create-container']({ image: 'x', stopSignal: 'SIGFOO' })).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
      message: expect.stringContaining('stopSignal'),
    });
    await expect(
      c['create-container']({ image: 'x', dns: { servers: ['1.1.1.1\nnameserver 6.6.6.6'] } }),
    ).rejects.toMatchObject(invalid);
    await expect(c.kill({ id: 'web', signal: 'SIGFOO' })).rejects.toMatchObject(invalid);
    // The name is taken (the first case stored it): refused before any node service is asked.
    await expect(c['create-container']({ image: 'x', name: 'web' })).rejects.toMatchObject({
      code: 'ALREADY_EXISTS',
    });
  });

  it('pages the list: filters first, newest first, every container once, bounded in bytes', async () => {
    const c = make(ns);
    const pns = `${ns}-pages`;
    const p = make(pns);
    // 30 containers, one a second apart (the listing's order), every third one labelled.
    const made: Container[] = [];
    for (let n = 0; n < 30; n++) {
      const at = new Date(Date.UTC(2026, 0, 1, 0, 0, n)).toISOString();
      const x = stored(pns, `p${n}`, n % 3 === 0 ? { tier: 'third' } : {}, at);
      await domain.store.reserveName(pns, x.name, x.id);
      await domain.store.put(x);
      made.push(x);
    }
    const newestFirst = made.map((x) => x.name).reverse();
    const first = await p['list-containers']({ limit: 7 });
    expect(first.containers.map((i) => i.container.name)).toEqual(newestFirst.slice(0, 7));
    expect(first.nextCursor).toBeTypeOf('string');
    const all = (req: ListContainersRequest) =>
      collectAll(p['list-containers'], req, 'containers').then((l) => l.map((i) => i.container.name));
    expect(await all({ limit: 7 })).toEqual(newestFirst);
    expect(await all({})).toEqual(newestFirst);
    // Filtered before paging: pages of 4 labelled containers, none short or repeated.
    const third = newestFirst.filter((n) => Number(n.slice(1)) % 3 === 0);
    expect(await all({ labels: { tier: 'third' }, limit: 4 })).toEqual(third);
    const labelled = await p['list-containers']({ labels: { tier: 'third' }, limit: 4 });
    expect(labelled.containers).toHaveLength(4);
    // A container removed between two pages shifts nothing: the cursor is a position, not an index.
    const gone = made[22] as Container;
    await domain.store.delete(gone);
    const next = await p['list-containers']({
      limit: 7,
      ...(first.nextCursor ? { cursor: first.nextCursor } : {}),
    });
    expect(next.containers.map((i) => i.container.name)).toEqual(newestFirst.slice(8, 15));
    await expect(p['list-containers']({ cursor: 'not-a-cursor' })).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
      message: expect.stringContaining('list-containers: invalid cursor'),
    });
    // Records of 100 KiB each: 12 of them (1.2 MB) are more than NATS carries in one reply.
    const bns = `${ns}-bytes`;
    const b = make(bns);
    for (let n = 0; n < 12; n++) {
      const x = stored(bns, `b${n}`, { pad: 'x'.repeat(100 * 1024) });
      await domain.store.reserveName(bns, x.name, x.id);
      await domain.store.put(x);
    }
    let pages = 0;
    let cursor: string | undefined;
    const names = new Set<string>();
    do {
      const page = await b['list-containers'](cursor ? { cursor } : {});
      expect(JSON.stringify(page).length).toBeLessThan(PAGE_MAX_BYTES + 4096);
      for (const i of page.containers) names.add(i.container.name);
      cursor = page.nextCursor;
      pages++;
    } while (cursor);
    expect(names.size).toBe(12);
    expect(pages).toBeGreaterThanOrEqual(3);
    expect((await c['list-containers']({})).containers.map((i) => i.container.name).sort()).toEqual([
      'db',
      'web',
    ]);
  });

  it('refuses a container config larger than a record may be, before anything is made', async () => {
    const c = make(ns);
    // 100,000 arguments of one character: about 400 KB of request, a record twice that once in the spec.
    const cmd = Array.from({ length: 100_000 }, () => 'x');
    const e = await c['create-container']({ image: 'x', name: 'huge', cmd }).catch((err: unknown) => err);
    expect(e).toMatchObject({ code: 'INVALID_ARGUMENT' });
    const message = (e as Error).message;
    expect(message).toContain(`limit of ${CONTAINER_RECORD_MAX_BYTES} bytes`);
    expect(message).toMatch(/the container config is \d{6,} bytes/);
    // Nothing was reserved: the name is free, and no node service was asked (none runs here, so
    // a create that got further would fail UNAVAILABLE, not ALREADY_EXISTS).
    await expect(c['get-container']({ id: 'huge' })).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await expect(c['create-container']({ image: 'x', name: 'huge' })).rejects.toMatchObject({
      code: 'UNAVAILABLE',
    });
    // Labels that would take a record past the limit are refused by update too.
    await expect(
      c['update-container']({ id: 'web', labels: { pad: 'x'.repeat(CONTAINER_RECORD_MAX_BYTES) } }),
    ).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringContaining('bytes') });
  });

  it('answers a record stored before the limit without its spec and config, naming them', async () => {
    const lns = `${ns}-legacy`;
    const c = make(lns);
    // What an earlier version let in: 100,000 arguments, in the spec and in the config.
    const args = Array.from({ length: 100_000 }, (_, n) => `a${n}`);
    const big = stored(lns, 'legacy');
    big.spec = { process: { args, env: [], cwd: '/' } };
    big.config = { image: 'busybox', cmd: args };
    const small = stored(lns, 'small');
    for (const x of [big, small]) {
      await domain.store.reserveName(lns, x.name, x.id);
      await domain.store.put(x);
    }
    const listed = await collectAll(c['list-containers'], {}, 'containers');
    expect(listed.map((i) => i.container.name).sort()).toEqual(['legacy', 'small']);
    const legacy = listed.find((i) => i.container.name === 'legacy');
    expect(legacy?.omitted).toEqual(['spec', 'config']);
    expect(legacy?.container.spec).toEqual({});
    expect(legacy?.container.config).toEqual({ image: 'busybox' });
    expect(listed.find((i) => i.container.name === 'small')?.omitted).toBeUndefined();
    expect((await c['get-container']({ id: 'legacy' })).omitted).toEqual(['spec', 'config']);
    expect((await c['get-container']({ id: 'small' })).container.spec).toEqual(small.spec);
    // A summary of a record without its spec has no command.
    const summaries = await collectAll(c['list-container-summaries'], {}, 'containers');
    expect(summaries.find((i) => i.container.name === 'legacy')?.container.command).toEqual([]);
    expect(summaries.find((i) => i.container.name === 'small')?.container.command).toEqual(['true']);
  });

  it('lists summaries: the listing columns of each record, filtered and paged as list-containers', async () => {
    const sns = `${ns}-summaries`;
    const c = make(sns);
    const made: Container[] = [];
    for (let n = 0; n < 5; n++) {
      const at = new Date(Date.UTC(2026, 0, 2, 0, 0, n)).toISOString();
      const x = stored(sns, `s${n}`, n % 2 === 0 ? { even: 'yes' } : {}, at);
      x.spec = { process: { args: ['sh', '-c', `echo ${n}`], env: [], cwd: '/' } };
      await domain.store.reserveName(sns, x.name, x.id);
      await domain.store.put(x);
      made.push(x);
    }
    const first = await c['list-container-summaries']({ limit: 2 });
    expect(first.nextCursor).toBeTypeOf('string');
    const s4 = made[4] as Container;
    expect(first.containers[0]).toEqual({
      container: {
        id: s4.id,
        namespace: sns,
        name: 's4',
        image: s4.image,
        node,
        command: ['sh', '-c', 'echo 4'],
        labels: { even: 'yes' },
        createdAt: s4.createdAt,
      },
      status: 'created',
    });
    const names = (req: ListContainersRequest) =>
      collectAll(c['list-container-summaries'], req, 'containers').then((l) =>
        l.map((i) => i.container.name),
      );
    const whole = (req: ListContainersRequest) =>
      collectAll(c['list-containers'], req, 'containers').then((l) => l.map((i) => i.container.name));
    expect(await names({ limit: 2 })).toEqual(['s4', 's3', 's2', 's1', 's0']);
    for (const req of [
      { labels: { even: 'yes' }, limit: 1 },
      { name: 's3' },
      { status: ['running' as const] },
    ])
      expect(await names(req)).toEqual(await whole(req));
  });
});
