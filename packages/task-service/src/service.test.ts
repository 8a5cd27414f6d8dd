import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  BERTH_VERSION,
  BerthError,
  Code,
  type Container,
  type Mount,
  Service,
  type ServiceDef,
  ShimApi,
  SnapshotApi,
  TaskApi,
} from '@berth/api';
import {
  type Client,
  client as clientOf,
  connectRedis,
  createLogger,
  type Handlers,
  keys,
  publishEvent,
  type Redis,
  type ServedService,
  serve,
  tryLock,
} from '@berth/kit';
import { startNats, startRedis, type TestServer } from '@berth/testing';
import { connect, type NatsConnection } from 'nats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { natsDeps } from './deps.js';
import { createDomain, type Domain, startExitTracking } from './domain.js';
import { createHandlers } from './service.js';

// The task-service over real NATS and Redis, with no image/snapshot/shim running: every path that
// must answer without them (bad input, unknown containers, exit recording) is checked here.
let nats: TestServer;
let redisServer: TestServer;
let redis: Redis;
let nc: NatsConnection;
let served: ServedService;
let domain: Domain;
let client: Client<typeof TaskApi>;
let stateRoot: string;
const node = `n-${randomBytes(3).toString('hex')}`;
const log = createLogger({ service: Service.task, node, level: 'silent' });

beforeAll(async () => {
  [nats, redisServer] = await Promise.all([startNats({ jetstream: false }), startRedis()]);
  redis = connectRedis(redisServer.url);
  await redis.connect();
  nc = await connect({ servers: nats.url });
  stateRoot = await mkdtemp(join(tmpdir(), 'berth-task-'));
  domain = createDomain({ redis, deps: natsDeps(nc), env: { node }, log });
  await startExitTracking(domain, nc, log);
  served = await serve({
    nc,
    service: TaskApi,
    version: BERTH_VERSION,
    node,
    log,
    handlers: createHandlers(domain),
  });
  client = clientOf(nc, TaskApi, { namespace: 'test' });
});
afterAll(async () => {
  await served?.stop(1000);
  await nc?.close();
  await redis?.quit();
  await Promise.all([nats?.stop(), redisServer?.stop()]);
  await rm(stateRoot, { recursive: true, force: true });
});

/** A busybox image record as the CRI gateway's view passes one, its digests all `hex` repeated. */
function busyboxRecord(hex: string) {
  const d = `sha256:${hex.repeat(64)}`;
  const desc = { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: d, size: 1 };
  return {
    name: 'docker.io/library/busybox:latest',
    target: desc,
    manifest: desc,
    configDigest: d,
    config: { rootfs: { type: 'layers' as const, diff_ids: [d] }, config: { Cmd: ['sh'] } },
    chainId: d,
    size: 1,
    labels: {},
    createdAt: 't0',
    updatedAt: 't0',
  };
}

function fakeContainer(name: string): Container {
  const id = randomBytes(32).toString('hex');
  const now = new Date().toISOString();
  return {
    id,
    namespace: 'test',
    name,
    image: { name: 'x', digest: `sha256:${'1'.repeat(64)}` },
    node,
    spec: { process: { args: ['sleep', '1'], env: [], cwd: '/' } },
    snapshotKey: `containers/test/${id}`,
    labels: {},
    runtime: { name: 'io.berth.runc' },
    io: { terminal: false, stdin: false },
    stopSignal: 'SIGTERM',
    config: { image: 'x' },
    createdAt: now,
    updatedAt: now,
  };
}

/** Handlers of `service` that refuse every operation (UNIMPLEMENTED); a test sets the ones it needs. */
function refusingAll<S extends ServiceDef>(service: S, what: string): Handlers<S> {
  const refuse = async () => {
    throw new BerthError(Code.UNIMPLEMENTED, `not in ${what}`);
  };
  return Object.fromEntries(
    Object.keys(service.ops)
      .filter((op) => op !== 'info')
      .map((op) => [op, refuse]),
  ) as unknown as Handlers<S>;
}

describe('task-service endpoints', () => {
  it('names the unknown container in every operation', async () => {
    const nf = { code: 'NOT_FOUND', message: 'container "nope" not found' };
    await expect(client['get-container']({ id: 'nope' })).rejects.toMatchObject(nf);
    await expect(client['delete-container']({ id: 'nope', force: true })).rejects.toMatchObject(nf);
    await expect(client.kill({ id: 'nope' })).rejects.toMatchObject(nf);
    await expect(client.start({ id: 'nope' })).rejects.toMatchObject(nf);
    await expect(client.wait({ id: 'nope', timeoutMs: 100 })).rejects.toMatchObject(nf);
    await expect(client.exec({ id: 'nope', execId: 'e1', args: ['true'] })).rejects.toMatchObject(nf);
  });

  it('refuses invalid resource values and names', async () => {
    await expect(
      client['create-container']({ image: 'x', resources: { memoryBytes: 1024 } }),
    ).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
      message: expect.stringMatching(/memory limit must be at least 6MiB/),
    });
    await expect(client['create-container']({ image: 'x', resources: { cpus: -1 } })).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
    });
    await expect(client['create-container']({ image: 'x', name: '-bad name' })).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
      message: expect.stringMatching(/invalid container name/),
    });
    await expect(client['create-container']({ image: 'x', oomScoreAdj: -1001 })).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
    });
    await expect(
      client['create-container']({ image: 'x', resources: { unified: { '../memory.max': '1' } } }),
    ).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
      message: expect.stringMatching(/cgroup v2 file name/),
    });
    await expect(
      client['create-container']({ image: 'x', resources: { memorySwapBytes: 0 } }),
    ).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
      message: expect.stringMatching(/memory\+swap limit/),
    });
  });

  it('refuses published ports without the bridge network, and a bad port, keeping no name', async () => {
    const ports = [{ hostPort: 8080, containerPort: 80, protocol: 'tcp' as const }];
    for (const network of [undefined, 'none', 'host'] as const) {
      await expect(
        client['create-container']({ image: 'x', name: 'ports', ports, ...(network ? { network } : {}) }),
      ).rejects.toMatchObject({
        code: 'INVALID_ARGUMENT',
        message: `ports are published only with network "bridge", not "${network ?? 'none'}"`,
      });
    }
    await expect(
      client['create-container']({
        image: 'x',
        network: 'bridge',
        ports: [{ hostPort: 0, containerPort: 80 }],
      }),
    ).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    expect(await domain.store.list('test')).toEqual([]);
    // The name was never reserved: a bridge create with it gets as far as the (absent) image-service.
    await expect(
      client['create-container']({ image: 'x', name: 'ports', network: 'bridge', ports }),
    ).rejects.toMatchObject({ code: 'UNAVAILABLE' });
    // Its network was asked for beside the image (no shim answers either): the undo could not
    // release it, so the intent stays for the reconcile. Forgotten here: no node exists.
    const left = (await domain.store.creating('test')).filter((i) => i.name === 'ports');
    expect(left).toMatchObject([{ name: 'ports', bridge: true }]);
    for (const i of left) await domain.store.endCreate('test', i.id);
  });

  it('lists the containers of a node whose image name or digest is given', async () => {
    const digest = `sha256:${'2'.repeat(64)}`;
    const mk = (name: string, over: Partial<Container>): Container => ({
      ...fakeContainer(name),
      namespace: 'imgs',
      ...over,
    });
    const byName = mk('by-name', { image: { name: 'docker.io/library/busybox:latest', digest } });
    const byDigest = mk('by-digest', { image: { name: 'other:1', digest } });
    const elsewhere = mk('elsewhere', { node: 'other-node', image: { name: 'other:1', digest } });
    const unrelated = mk('unrelated', {});
    for (const c of [byName, byDigest, elsewhere, unrelated]) await domain.store.put(c);
    const imgs = clientOf(nc, TaskApi, { namespace: 'imgs' });
    const names = async (req: { node?: string; images?: string[] }) =>
      (await imgs['list-containers'](req)).containers.map((i) => i.container.name).sort();
    expect(await names({ node, images: ['docker.io/library/busybox:latest'] })).toEqual(['by-name']);
    expect(await names({ node, images: [digest] })).toEqual(['by-digest', 'by-name']);
    expect(await names({ images: [digest] })).toEqual(['by-digest', 'by-name', 'elsewhere']);
    expect(await names({ node: 'other-node' })).toEqual(['elsewhere']);
    expect(await names({ node, images: ['nothing:here'] })).toEqual([]);
  });

  it('refuses a duplicate name before touching any node service', async () => {
    const c = fakeContainer('taken');
    await domain.store.reserveName('test', c.name, c.id);
    await domain.store.put(c);
    await expect(client['create-container']({ image: 'x', name: 'taken' })).rejects.toMatchObject({
      code: 'ALREADY_EXISTS',
      message: expect.stringContaining('container name "taken" is already in use'),
    });
    // The refused creation recorded nothing to undo.
    expect(await domain.store.creating('test')).toEqual([]);
  });

  it('releases the name when the image-service cannot be reached', async () => {
    for (let i = 0; i < 2; i++) {
      await expect(client['create-container']({ image: 'busybox', name: 'retry-me' })).rejects.toMatchObject({
        code: 'UNAVAILABLE',
      });
    }
  });

  it("takes the caller's image record instead of asking the image-service, and refuses one of another image", async () => {
    const imageRecord = busyboxRecord('3');
    await expect(
      client['create-container']({ image: 'busybox', name: 'mismatch', imageRecord }),
    ).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
      message: 'imageRecord is the record of "docker.io/library/busybox:latest", not of image "busybox"',
    });
    // No image-service runs here: the create gets past the image to the (absent) snapshot-service.
    const err = await client['create-container']({
      image: imageRecord.name,
      name: 'given',
      imageRecord,
    }).catch((e: unknown) => e as Error);
    expect(err).toMatchObject({ code: 'UNAVAILABLE', message: expect.stringMatching(/snapshot/) });
    // Undone: no name kept, no creation left to finish.
    expect(await domain.store.creating('test')).toEqual([]);
    await expect(client['create-container']({ image: 'busybox', name: 'given' })).rejects.toMatchObject({
      code: 'UNAVAILABLE',
      message: expect.stringMatching(/image/),
    });
  });

  it('with prepareAfterReply stores and answers the record before any snapshot, in one step with its name', async () => {
    const imageRecord = busyboxRecord('4');
    const d = imageRecord.chainId;
    const req = { image: imageRecord.name, name: 'after-reply', imageRecord, prepareAfterReply: true };
    // No snapshot-service runs here: the reply comes anyway, the prepare behind it fails.
    const c = await client['create-container'](req);
    expect(c).toMatchObject({
      name: 'after-reply',
      image: { chainId: d },
      snapshotKey: `containers/test/${c.id}`,
    });
    expect(c.rootfs).toBeUndefined();
    expect(c.config).not.toHaveProperty('prepareAfterReply');
    expect(c.config).not.toHaveProperty('imageRecord');
    expect(await domain.store.creating('test')).toEqual([]);
    await domain.containers.settled('test', c.id);
    // The failed prepare let the lock go and left the record as it was answered.
    const free = await tryLock(redis, keys.containerLock('test', c.id), 1000);
    expect(free).toBeDefined();
    await free?.release();
    expect(await domain.store.get('test', c.id)).toEqual(c);
    // Its image's chain stays claimed for it, on its node only, while it has no snapshot.
    expect((await client['claimed-chains']({ node })).chainIds).toContain(d);
    expect((await client['claimed-chains']({ node: `${node}-other` })).chainIds).not.toContain(d);
    // The first task create prepares it again, and says why it cannot.
    await expect(client.create({ id: c.id })).rejects.toMatchObject({
      code: 'UNAVAILABLE',
      message: expect.stringMatching(/snapshot/),
    });
    // A second container of the same name is refused with nothing stored.
    await expect(client['create-container'](req)).rejects.toMatchObject({
      code: 'ALREADY_EXISTS',
      message: `container name "after-reply" is already in use by container ${c.id.slice(0, 12)}`,
    });
    expect((await domain.store.list('test')).filter((i) => i.container.name === 'after-reply')).toHaveLength(
      1,
    );
    await domain.store.delete(c);
    // The claim went with the record.
    expect((await client['claimed-chains']({ node })).chainIds).not.toContain(d);
  });

  it('reads under the lock: with it at once, or again once a holder let it go', async () => {
    const c = fakeContainer('locked-read');
    await domain.store.put(c);
    const read = () => domain.store.get('test', c.id);
    // Taken at once: the read sent with the acquire is the one used.
    expect(
      await domain.containers.lockAndRead('test', c.id, read, async (r, l) => [r?.name, l.first]),
    ).toEqual(['locked-read', true]);
    // Held by another writer that changes the record before letting go: read again after.
    const holding = domain.containers.lock('test', c.id, async () => {
      const waiting = domain.containers.lockAndRead('test', c.id, read, async (r, l) => [r?.name, l.first]);
      await domain.store.put({ ...c, name: 'renamed' });
      return { waiting };
    });
    expect(await (await holding).waiting).toEqual(['renamed', false]);
  });

  it('refuses exec and kill when the container has no running task', async () => {
    const c = fakeContainer('idle');
    await domain.store.reserveName('test', c.name, c.id);
    await domain.store.put(c);
    await expect(client.exec({ id: 'idle', execId: 'e1', args: ['ls'] })).rejects.toMatchObject({
      code: 'FAILED_PRECONDITION',
      message: 'container "idle" is not running',
    });
    await expect(client.kill({ id: 'idle' })).rejects.toMatchObject({ code: 'FAILED_PRECONDITION' });
    expect((await client['get-container']({ id: c.id.slice(0, 10) })).status).toBe('created');
  });

  it('records a tasks.exit event and answers wait from the store', async () => {
    const c = fakeContainer('exiting');
    await domain.store.reserveName('test', c.name, c.id);
    await domain.store.put(c);
    await domain.store.putTask({
      id: c.id,
      namespace: 'test',
      node,
      status: 'running',
      pid: 4242,
      createdAt: c.createdAt,
    });
    const exitedAt = new Date().toISOString();
    publishEvent(nc, 'tasks.exit', 'test', {
      namespace: 'test',
      id: c.id,
      pid: 4242,
      exitCode: 3,
      exitedAt,
      node,
    });
    const deadline = Date.now() + 5000;
    while ((await domain.store.getTask('test', c.id))?.status !== 'stopped' && Date.now() < deadline) {
      await nc.flush();
    }
    expect(await client.wait({ id: 'exiting', timeoutMs: 1000 })).toEqual({
      exitCode: 3,
      exitedAt,
      reason: 'Error',
    });
    const { containers } = await client['list-containers']({ status: ['stopped'] });
    expect(containers.map((i) => i.container.name)).toEqual(['exiting']);
    // Removing needs the node's shim to delete the task: without one it is UNAVAILABLE and nothing goes.
    await expect(client['delete-container']({ id: 'exiting' })).rejects.toMatchObject({
      code: 'UNAVAILABLE',
    });
    expect((await client['get-container']({ id: 'exiting' })).status).toBe('stopped');
  });
});

/** A container whose removal a killed replica left half-way, with that replica's lock still held. */
async function halfRemoved(name: string) {
  const c = fakeContainer(name);
  await domain.store.reserveName('test', c.name, c.id);
  await domain.store.put(c);
  await domain.store.markRemoving('test', c.id);
  // The killed replica's lock: it stays until its TTL runs out (30 s).
  const held = await tryLock(redis, keys.containerLock('test', c.id), 30_000);
  expect(held).toBeTruthy();
  return { c, held };
}

describe('a replica starting after one that was killed mid-operation', () => {
  it("answers at once while finishing the dead one's removal waits for that container's lock", async () => {
    const { c, held } = await halfRemoved('half-removed');
    const second = createDomain({ redis, deps: natsDeps(nc), env: { node }, log });
    const started = Date.now();
    const tracking = await startExitTracking(second, nc, log);
    try {
      // Before, startup waited for the whole first reconcile, and so for the lock: 30 s of silence.
      expect(Date.now() - started).toBeLessThan(5000);
      expect((await domain.store.removing('test')).map((r) => r.id)).toContain(c.id);
    } finally {
      tracking.stop();
      await held?.release();
      await domain.store.unmarkRemoving('test', c.id);
    }
  });
});

describe('the reconcile, with a stand-in shim', () => {
  /** A shim serving node `shimNode` whose `state` is `state`; every other operation is refused. */
  function standInShim(shimNode: string, state: Handlers<typeof ShimApi>['state']): Promise<ServedService> {
    const handlers = refusingAll(ShimApi, 'the stand-in shim');
    handlers.state = state;
    return serve({ nc, service: ShimApi, version: BERTH_VERSION, node: shimNode, log, handlers });
  }

  /** A container of node `shimNode` whose task the store thinks running. */
  async function liveTask(name: string, shimNode: string): Promise<Container> {
    const c = { ...fakeContainer(name), node: shimNode };
    await domain.store.reserveName('test', c.name, c.id);
    await domain.store.put(c);
    await domain.store.putTask({
      id: c.id,
      namespace: 'test',
      node: shimNode,
      status: 'running',
      pid: 4343,
      createdAt: c.createdAt,
    });
    return c;
  }

  async function stoppedWithin(c: Container, ms: number) {
    const deadline = Date.now() + ms;
    while ((await domain.store.getTask('test', c.id))?.status !== 'stopped' && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50));
    }
    return domain.store.getTask('test', c.id);
  }

  const exited =
    (exitCode: number) =>
    async ({ namespace, id }: { namespace: string; id: string }) => ({
      namespace,
      id,
      status: 'stopped' as const,
      pid: 4343,
      exitCode,
      exitedAt: new Date().toISOString(),
    });

  it('records within seconds, not at the next interval, the exit of a shim that served only after the first pass asked it', async () => {
    // The restart of a shim and a task-service together: the shim announced the exit it found
    // before this replica subscribed (the event went to no one), and this replica's startup
    // reconcile asked it before it served. Only the shim knows the exit now.
    const shimNode = `s-${randomBytes(3).toString('hex')}`;
    const c = await liveTask('missed-exit', shimNode);
    let serving = false;
    let asked: () => void = () => undefined;
    const askedBefore = new Promise<void>((resolve) => {
      asked = resolve;
    });
    const answer = exited(9);
    const shim = await standInShim(shimNode, async (req) => {
      if (!serving) {
        asked();
        throw new BerthError(Code.UNAVAILABLE, 'shim is recovering its monitors');
      }
      return answer(req);
    });
    const replica = createDomain({ redis, deps: natsDeps(nc), env: { node }, log });
    // No interval pass within the test: only a retry can find the exit.
    const tracking = await startExitTracking(replica, nc, log, { intervalMs: 600_000, retryMs: 200 });
    try {
      await askedBefore;
      serving = true;
      expect(await stoppedWithin(c, 5000)).toMatchObject({ status: 'stopped', exitCode: 9 });
    } finally {
      tracking.stop();
      await shim.stop(1000);
      await domain.store.delete(c);
    }
  });

  it("records missed exits before finishing a removal that waits for a dead replica's lock", async () => {
    const shimNode = `s-${randomBytes(3).toString('hex')}`;
    const c = await liveTask('exited-meanwhile', shimNode);
    const shim = await standInShim(shimNode, exited(7));
    const { c: half, held } = await halfRemoved('half-removed-too');
    const replica = createDomain({ redis, deps: natsDeps(nc), env: { node }, log });
    const tracking = await startExitTracking(replica, nc, log, { intervalMs: 600_000 });
    try {
      expect(await stoppedWithin(c, 5000)).toMatchObject({ status: 'stopped', exitCode: 7 });
      expect((await domain.store.removing('test')).map((r) => r.id)).toContain(half.id);
    } finally {
      tracking.stop();
      await held?.release();
      await domain.store.unmarkRemoving('test', half.id);
      await shim.stop(1000);
      await domain.store.delete(c);
    }
  });
});

describe('a create whose rootfs is prepared after the reply, beside a stand-in snapshot-service', () => {
  // The snapshot-service of the test's node, served on the same NATS: prepare waits for `gate`.
  const made = new Map<string, { parent: string | undefined }>();
  let gate: Promise<void> = Promise.resolve();
  let prepared: () => void = () => undefined;
  let hideOnce = false;
  const mountsOf = (key: string): Mount[] => [{ type: 'bind', source: `/stand-in/${key}`, options: ['rw'] }];
  let standIn: ServedService;

  beforeAll(async () => {
    const handlers = refusingAll(SnapshotApi, 'the stand-in snapshot-service');
    handlers.prepare = async ({ key, parent }) => {
      prepared();
      await gate;
      if (made.has(key)) throw new BerthError(Code.ALREADY_EXISTS, `snapshot "${key}" exists`);
      made.set(key, { parent });
      return { mounts: mountsOf(key) };
    };
    handlers.mounts = async ({ key }) => {
      if (!made.has(key) || hideOnce) {
        hideOnce = false;
        throw new BerthError(Code.NOT_FOUND, `snapshot "${key}" not found`);
      }
      return { mounts: mountsOf(key) };
    };
    standIn = await serve({ nc, service: SnapshotApi, version: BERTH_VERSION, node, log, handlers });
  });
  afterAll(async () => {
    await standIn?.stop(1000);
  });

  it('answers while the prepare waits, holds the lock till the mounts are stored, and another replica waits', async () => {
    let open: () => void = () => undefined;
    gate = new Promise<void>((resolve) => {
      open = resolve;
    });
    const asked = new Promise<void>((resolve) => {
      prepared = resolve;
    });
    const imageRecord = busyboxRecord('5');
    const c = await client['create-container']({
      image: imageRecord.name,
      name: 'latched',
      imageRecord,
      prepareAfterReply: true,
    });
    expect(c.rootfs).toBeUndefined();
    await asked;
    // Stored before the reply, the record claims its image's chain until the prepare ends.
    expect((await client['claimed-chains']({ node })).chainIds).toEqual([imageRecord.chainId]);
    // The lock is held: the one-step background removal finds it busy and removes nothing.
    expect(await domain.store.removeIfDone('test', c.id)).toBeUndefined();
    // Another replica (its own manager on the same Redis) gets the lock, and reads the record,
    // only once the mounts are in it.
    const other = createDomain({ redis, deps: natsDeps(nc), env: { node }, log });
    const waiting = other.containers.lock('test', c.id, () => other.store.get('test', c.id));
    open();
    expect((await waiting)?.rootfs).toEqual(mountsOf(c.snapshotKey));
    expect(made.get(c.snapshotKey)).toEqual({ parent: imageRecord.chainId });
    await domain.containers.settled('test', c.id);
    expect((await domain.store.get('test', c.id))?.rootfs).toEqual(mountsOf(c.snapshotKey));
    // The snapshot holds the chain now: the claim went with the mounts' write.
    expect((await client['claimed-chains']({ node })).chainIds).toEqual([]);
    await domain.store.delete(c);
  });

  it('makes a snapshot the record lacks at task create, and takes one a late prepare made', async () => {
    gate = Promise.resolve();
    const c: Container = {
      ...fakeContainer('no-rootfs'),
      image: { name: 'x', digest: `sha256:${'6'.repeat(64)}`, chainId: `sha256:${'6'.repeat(64)}` },
    };
    expect(await domain.containers.rootfsOf(c)).toEqual(mountsOf(c.snapshotKey));
    expect(made.get(c.snapshotKey)).toEqual({ parent: c.image.chainId });
    // Made meanwhile by a prepare that outlived its caller: mounts says NOT_FOUND once, prepare
    // then ALREADY_EXISTS, and the mounts are asked again.
    hideOnce = true;
    expect(await domain.containers.rootfsOf(c)).toEqual(mountsOf(c.snapshotKey));
  });

  it('stores a record and its name again for the same id, never for another', async () => {
    const c = fakeContainer('twice');
    await domain.store.createNamed(c);
    await domain.store.createNamed(c);
    const rival = { ...fakeContainer('twice') };
    await expect(domain.store.createNamed(rival)).rejects.toMatchObject({ code: 'ALREADY_EXISTS' });
    expect(await domain.store.get('test', rival.id)).toBeUndefined();
    await domain.store.delete(c);
  });
});
