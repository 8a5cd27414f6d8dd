import { existsSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BerthError, Code, Principal, subjectOf } from '@berth/api';
import { startNats, startRedis } from '@berth/testing';
import type { NatsConnection } from 'nats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call } from './client.js';
import { allowList, setLocalCaller } from './local-route.js';
import { createLogger } from './logger.js';
import { connectNats } from './nats.js';
import { natsPermissions } from './permissions.js';
import { processStart } from './pid-alive.js';
import { type ServedService, serve } from './service.js';
import { frameReader } from './socket-route.js';
import { type ChildService, randomNode, startTestService } from './testdata/child.js';
import { failure } from './testdata/failure.js';
import { RouteApi } from './testdata/route-api.js';
import { TestApi } from './testdata/test-api.mjs';

// Calls between the services of one node over unix sockets (socket-route.ts). The callees serve
// on one nats-server and the callers are connected to another, so only the socket can answer a
// call unless a test puts a NATS responder beside the caller on purpose.

const NODE = randomNode();

let natsA: Awaited<ReturnType<typeof startNats>>;
let natsB: Awaited<ReturnType<typeof startNats>>;
let redis: Awaited<ReturnType<typeof startRedis>>;
let root: string;
const conns: NatsConnection[] = [];
const held = new Map<string, () => void>();

async function nats(url: string): Promise<NatsConnection> {
  const nc = await connectNats({ url, name: 'socket-route-test' });
  conns.push(nc);
  return nc;
}

/** A caller on server B as `principal`, with the routes of `dir`. */
async function caller(principal: Principal, dir: string, node = NODE): Promise<NatsConnection> {
  const nc = await nats(natsB.url);
  setLocalCaller(nc, allowList(natsPermissions(principal, node).publish), { dir, principal, node });
  return nc;
}

function permit(principal: string) {
  return Object.hasOwn(Principal, principal) || Object.values(Principal).includes(principal as Principal)
    ? allowList(natsPermissions(principal as Principal, NODE).publish)
    : undefined;
}

/** A RouteApi instance answering as `by`, on `nc`, with routes in `dir` when given. */
async function who(nc: NatsConnection, by: string, dir?: string): Promise<ServedService> {
  return serve({
    nc,
    service: RouteApi,
    version: '0.0.0',
    node: NODE,
    log: createLogger({ service: 'task-service', node: NODE, level: 'silent' }),
    handlers: {
      echo: async ({ text }, ctx) => ({ text, namespace: ctx.namespace, by }),
      fail: async ({ code, message }) => {
        throw new BerthError(code as Code, message);
      },
      hold: ({ id }) => new Promise((resolve) => held.set(id, () => resolve({ id }))),
    },
    ...(dir ? { routes: { dir, permit } } : {}),
  });
}

/** One frame of the route wire, built here from its description (socket-route.ts). */
function rawFrame(type: number, id: number, meta: unknown, payload = Buffer.alloc(0)): Buffer {
  const m = Buffer.from(JSON.stringify(meta));
  const head = Buffer.alloc(13);
  head.writeUInt32BE(9 + m.length + payload.length, 0);
  head.writeUInt8(type, 4);
  head.writeUInt32BE(id, 5);
  head.writeUInt32BE(m.length, 9);
  return Buffer.concat([head, m, payload]);
}

/** Sends frames on a raw connection; resolves with what came back once the callee closed it. */
function rawExchange(path: string, frames: Buffer[]): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const sock = createConnection(path);
    const got: Buffer[] = [];
    sock.on('data', (b) => got.push(b));
    sock.on('error', reject);
    sock.on('close', () => resolve(Buffer.concat(got)));
    for (const f of frames) sock.write(f);
    setTimeout(() => sock.destroy(), 2000).unref();
  });
}

beforeAll(async () => {
  [natsA, natsB, redis] = await Promise.all([
    startNats({ jetstream: false }),
    startNats({ jetstream: false }),
    startRedis({ appendonly: false }),
  ]);
  root = await mkdtemp(join(tmpdir(), 'berth-socket-route-'));
});

afterAll(async () => {
  await Promise.all(conns.map((c) => c.close()));
  await Promise.all([natsA?.stop(), natsB?.stop(), redis?.stop()]);
  await rm(root, { recursive: true, force: true });
});

describe('a service in another process of the node', () => {
  let child: ChildService | undefined;
  const runRoot = () => join(root, 'child-run');
  const start = () =>
    startTestService({
      natsUrl: natsA.url,
      redisUrl: redis.url,
      nodeId: NODE,
      env: { BERTH_RUN_ROOT: runRoot() },
    });
  afterAll(() => child?.stop());

  it('answers over its socket, which only its user can reach', async () => {
    child = await start();
    const dir = join(runRoot(), 'routes');
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    const [sock] = readdirSync(dir);
    expect(sock).toBe(`task-${child.proc.pid}-${processStart(child.proc.pid ?? 0)}-1.sock`);
    expect(statSync(join(dir, sock as string)).mode & 0o777).toBe(0o600);
    const gw = await caller(Principal.cri, dir);
    const r = await call(gw, TestApi, 'echo', { text: 'héllo' });
    expect(r).toEqual({ text: 'héllo', pid: child.proc.pid });
    const t = await call(gw, TestApi, 'trace', {}, { namespace: 'k8s.io' });
    expect(t.namespace).toBe('k8s.io');
    const refused = await failure(
      call(gw, TestApi, 'fail', { code: Code.NOT_FOUND, message: 'x "1" not found' }),
    );
    expect([refused.code, refused.message]).toEqual([Code.NOT_FOUND, 'x "1" not found']);
    const crash = await failure(call(gw, TestApi, 'crash', { message: 'boom' }));
    expect(crash.code).toBe(Code.INTERNAL);
    const lie = await failure(call(gw, TestApi, 'liar', {}));
    expect(lie.message).toMatch(/does not match its contract/);
    // Its access line says how the request came.
    const line = await child.waitForLog((l) => l.msg === 'request' && l.op === 'echo');
    expect(line.via).toBe('socket');
  });

  it('refuses a reply over max_payload as NATS does and times out as NATS does', async () => {
    const dir = join(runRoot(), 'routes');
    const gw = await caller(Principal.cri, dir);
    const max = gw.info?.max_payload ?? 0;
    const big = await failure(call(gw, TestApi, 'big', { bytes: max + 1 }));
    expect(big.code).toBe(Code.INTERNAL);
    expect(big.message).toMatch(/could not send the reply/);
    // A request under max_payload alone but over it with its headers is refused as NATS refuses it.
    const edge = await failure(call(gw, TestApi, 'echo', { text: 'x'.repeat(max - 20) }));
    expect([edge.code, edge.message]).toEqual([
      Code.RESOURCE_EXHAUSTED,
      `request to task-service "echo" is larger than the NATS server's max_payload`,
    ]);
    const late = await failure(call(gw, TestApi, 'hold', { id: 'late' }, { timeoutMs: 200 }));
    expect([late.code, late.message]).toEqual([
      Code.DEADLINE_EXCEEDED,
      'task-service did not answer "hold" within 200 ms',
    ]);
    // The connection is still good after all of it.
    await expect(call(gw, TestApi, 'echo', { text: 'ok' })).resolves.toMatchObject({ text: 'ok' });
  });

  it('watches a long call by its heartbeats: answered when done, given up when the callee freezes', async () => {
    const dir = join(runRoot(), 'routes');
    const gw = await caller(Principal.cri, dir);
    const c = child as ChildService;
    const release = await nats(natsA.url);
    const from = c.mark();
    const done = call(gw, TestApi, 'hold-long', { id: 'long-1' });
    await c.waitForLog((l) => l.msg === 'hold started' && l.holdId === 'long-1', { from });
    // Beats have kept it alive past the stall window before it is answered.
    await new Promise((r) => setTimeout(r, 6_000));
    release.publish('test.release.long-1');
    await expect(done).resolves.toEqual({ id: 'long-1', pid: c.proc.pid });
    // Frozen (its socket open, nothing sent): given up after the stall window, not at the timeout.
    const mark = c.mark();
    const frozen = failure(call(gw, TestApi, 'hold-long', { id: 'long-2' }));
    await c.waitForLog((l) => l.msg === 'hold started' && l.holdId === 'long-2', { from: mark });
    c.proc.kill('SIGSTOP');
    try {
      const err = await frozen;
      expect(err.code).toBe(Code.UNAVAILABLE);
      expect(err.message).toMatch(/stopped answering "hold-long": no heartbeat for 5000 ms/);
    } finally {
      c.proc.kill('SIGCONT');
    }
    release.publish('test.release.long-2');
  }, 30_000);

  it('is called over NATS by a principal whose user may not publish its subjects', async () => {
    const dir = join(runRoot(), 'routes');
    const snap = await caller(Principal.snapshot, dir);
    expect(natsPermissions(Principal.snapshot, NODE).publish).not.toContain(subjectOf(TestApi, '>'));
    const err = await failure(call(snap, TestApi, 'echo', { text: 'x' }));
    expect(err.message).toMatch(/no responder/);
  });

  it('fails a call in flight at once when it dies, and is called over NATS after', async () => {
    const dir = join(runRoot(), 'routes');
    const gw = await caller(Principal.cri, dir);
    const c = child as ChildService;
    const pending = failure(call(gw, TestApi, 'hold', { id: 'never' }));
    await c.waitForLog((l) => l.msg === 'hold started' && l.holdId === 'never', { timeoutMs: 5000 });
    c.proc.kill('SIGKILL');
    const lost = await pending;
    expect(lost.code).toBe(Code.UNAVAILABLE);
    expect(lost.message).toBe(
      'task-service on this node was lost while answering "hold" (it may have been carried out)',
    );
    await c.exited;
    // Its socket is left behind; a call finds it refusing and goes over NATS (nothing answers there).
    const left = readdirSync(dir);
    expect(left).toEqual([expect.stringMatching(new RegExp(`^task-${c.proc.pid}-\\d+-1\\.sock$`))]);
    const gone = await failure(call(gw, TestApi, 'echo', { text: 'x' }));
    expect(gone.message).toMatch(/no responder/);
    // Sockets of processes gone, one of them under a pid now running another process (pid 1,
    // with a start it never had), one named as before names held the start: swept by the next
    // instance.
    const reused = join(dir, `task-1-${Number(processStart(1)) + 1}-1.sock`);
    const legacy = join(dir, `task-${c.proc.pid}-2.sock`);
    writeFileSync(reused, '');
    writeFileSync(legacy, '');
    child = await start();
    expect(existsSync(reused)).toBe(false);
    expect(existsSync(legacy)).toBe(false);
    expect(readdirSync(dir)).toEqual([`task-${child.proc.pid}-${processStart(child.proc.pid ?? 0)}-1.sock`]);
    const gw2 = await caller(Principal.cri, dir);
    await expect(call(gw2, TestApi, 'echo', { text: 'again' })).resolves.toEqual({
      text: 'again',
      pid: child.proc.pid,
    });
  });
});

describe('the route wire', () => {
  it('reads frames split anywhere and several to a chunk', () => {
    const frames = [
      rawFrame(2, 1, { subject: 'a' }, Buffer.from('one')),
      rawFrame(3, 2, {}, Buffer.alloc(70_000, 7)),
      rawFrame(2, 3, { subject: 'c' }),
    ];
    const all = Buffer.concat(frames);
    for (const size of [1, 3, 13, 4096, all.length]) {
      const got: [number, number, number][] = [];
      const read = frameReader(
        (f) => got.push([f.type, f.id, f.payload.length]),
        (why) => {
          throw new Error(why);
        },
      );
      for (let i = 0; i < all.length; i += size) read(all.subarray(i, i + size));
      expect(got, `chunks of ${size}`).toEqual([
        [2, 1, 3],
        [3, 2, 70_000],
        [2, 3, 0],
      ]);
    }
    const bad: string[] = [];
    frameReader(
      () => undefined,
      (why) => bad.push(why),
    )(Buffer.from([0, 0, 0, 2, 1, 1]));
    expect(bad).toEqual(['a frame of 2 bytes']);
  });
});

describe('the callee side', () => {
  const dir = () => join(root, 'inproc-routes');

  it('sends back elsewhere (to NATS, which decides) what a principal may not ask, and cuts a connection with no HELLO', async () => {
    const served = await who(await nats(natsA.url), 'a', dir());
    try {
      const [name] = readdirSync(dir());
      const path = join(dir(), name as string);
      const subject = subjectOf(RouteApi, 'echo');
      const body = Buffer.from(JSON.stringify({ text: 'x' }));
      /** The meta of each reply on a connection that sends `frames`, once it has `n` of them. */
      const replies = (frames: Buffer[], n: number) =>
        new Promise<unknown[]>((resolve, reject) => {
          const sock = createConnection(path);
          const got: unknown[] = [];
          sock.on(
            'data',
            frameReader((f) => {
              got.push({ id: f.id, ...f.meta, body: Buffer.from(f.payload).toString() });
              if (got.length === n) {
                sock.destroy();
                resolve(got);
              }
            }, reject),
          );
          sock.on('error', reject);
          // Every frame in one write: the callee splits them.
          sock.write(Buffer.concat(frames));
        });
      await expect(
        replies(
          [rawFrame(1, 0, { principal: 'mallory' }), rawFrame(2, 1, { subject, headers: [] }, body)],
          1,
        ),
      ).resolves.toEqual([{ id: 1, elsewhere: true, body: '' }]);
      await expect(
        replies(
          [
            rawFrame(1, 0, { principal: Principal.snapshot }),
            rawFrame(2, 1, { subject, headers: [] }, body),
            rawFrame(2, 2, { subject: 'berth.task.v1.nothing', headers: [] }, body),
          ],
          2,
        ),
      ).resolves.toEqual([
        { id: 1, elsewhere: true, body: '' },
        { id: 2, elsewhere: true, body: '' },
      ]);
      // The same request from a principal that may publish it is answered.
      await expect(
        replies(
          [rawFrame(1, 0, { principal: Principal.cri }), rawFrame(2, 7, { subject, headers: [] }, body)],
          1,
        ),
      ).resolves.toEqual([{ id: 7, body: JSON.stringify({ text: 'x', namespace: 'default', by: 'a' }) }]);
      const noHello = await rawExchange(path, [rawFrame(2, 1, { subject, headers: [] }, body)]);
      expect(noHello.length).toBe(0);
      const notObject = await rawExchange(path, [rawFrame(1, 0, null)]);
      expect(notObject.length).toBe(0);
      // The callee is still there for everyone else.
      const gw = await caller(Principal.cri, dir());
      await expect(call(gw, RouteApi, 'echo', { text: 'still' })).resolves.toEqual({
        text: 'still',
        namespace: 'default',
        by: 'a',
      });
    } finally {
      await served.stop(1000);
    }
  });

  it('finishes its in-flight calls on stop and sends the later ones elsewhere', async () => {
    // A second instance on the caller's own NATS server: where `elsewhere` sends a call.
    const other = await who(await nats(natsB.url), 'b');
    const first = await who(await nats(natsA.url), 'a', dir());
    try {
      const gw = await caller(Principal.cri, dir());
      await expect(call(gw, RouteApi, 'echo', { text: '1' })).resolves.toEqual({
        text: '1',
        namespace: 'default',
        by: 'a',
      });
      const pending = call(gw, RouteApi, 'hold', { id: 'stop' });
      await expect.poll(() => held.has('stop')).toBe(true);
      // A busy caller: calls keep going out while the callee stops; each is answered by one
      // instance or the other, none is lost on the closing connection.
      let busy = true;
      const answered: string[] = [];
      const burst = (async () => {
        for (let i = 0; busy; i++) {
          const batch = await Promise.all(
            Array.from({ length: 8 }, (_, j) => call(gw, RouteApi, 'echo', { text: `${i}.${j}` })),
          );
          answered.push(...batch.map((r) => r.by));
        }
      })();
      await expect.poll(() => answered.length).toBeGreaterThan(16);
      const stopping = first.stop(5000);
      // Stopping: its socket is gone and a new call goes over NATS to the other instance.
      await expect.poll(() => readdirSync(dir()).length).toBe(0);
      await expect(call(gw, RouteApi, 'echo', { text: '2' })).resolves.toEqual({
        text: '2',
        namespace: 'default',
        by: 'b',
      });
      await expect.poll(() => answered.filter((b) => b === 'b').length).toBeGreaterThan(16);
      // Its last in-flight call answered, it ends its connections while the caller is still busy.
      held.get('stop')?.();
      await expect(pending).resolves.toEqual({ id: 'stop' });
      await stopping;
      const before = answered.length;
      await expect.poll(() => answered.length).toBeGreaterThan(before + 16);
      busy = false;
      await burst;
      expect(new Set(answered)).toEqual(new Set(['a', 'b']));
      expect(existsSync(dir())).toBe(true);
    } finally {
      await other.stop(1000);
    }
  });
});
