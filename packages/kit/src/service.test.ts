import { Code, ImageApi, natsCodeOf, SnapshotApi, subjectOf } from '@berth/api';
import { startNats, startRedis } from '@berth/testing';
import { JSONCodec, type NatsConnection, headers as natsHeaders } from 'nats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, client } from './client.js';
import { connectNats } from './nats.js';
import { type ChildService, randomNode, startTestService } from './testdata/child.js';
import { failure } from './testdata/failure.js';
import { TestApi } from './testdata/test-api.mjs';

// Request/reply, queue groups, error mapping, timeouts and no-responders, all against a real
// nats-server and the test service running as separate node processes.

const json = JSONCodec<unknown>();
let nats: Awaited<ReturnType<typeof startNats>>;
let redis: Awaited<ReturnType<typeof startRedis>>;
let nc: NatsConnection;
let a: ChildService;
let b: ChildService | undefined;

beforeAll(async () => {
  [nats, redis] = await Promise.all([startNats({ jetstream: false }), startRedis({ appendonly: false })]);
  nc = await connectNats({ url: nats.url, name: 'kit-test' });
  a = await startTestService({ natsUrl: nats.url, redisUrl: redis.url });
});

afterAll(async () => {
  await Promise.all([a?.stop(), b?.stop()]);
  await nc?.close();
  await Promise.all([nats?.stop(), redis?.stop()]);
});

describe('request/reply across processes', () => {
  it('answers from the other process, carrying the namespace header', async () => {
    const r = await call(nc, TestApi, 'echo', { text: 'héllo' }, { timeoutMs: 5000 });
    expect(r.text).toBe('héllo');
    expect(r.pid).toBe(a.proc.pid);
    expect(r.pid).not.toBe(process.pid);
    const t = await call(nc, TestApi, 'trace', {}, { namespace: 'k8s.io', timeoutMs: 5000 });
    expect(t.namespace).toBe('k8s.io');
    const d = await call(nc, TestApi, 'trace', {}, { timeoutMs: 5000 });
    expect(d.namespace).toBe('default');
  });

  it('answers info with its health checks', async () => {
    const info = await call(nc, TestApi, 'info', {}, { timeoutMs: 5000 });
    expect(info).toMatchObject({ service: 'task-service', healthy: true, pid: a.proc.pid });
    expect(info.checks).toEqual({ nats: 'ok', redis: 'ok' });
  });

  it('builds typed clients from the definition, with its timeouts and per-call overrides', async () => {
    const test = client(nc, TestApi);
    expect((await test.echo({ text: 'x' })).text).toBe('x');
    const err = await failure(test.hold({ id: 'typed-client' }, { timeoutMs: 200 }));
    expect(err.code).toBe(Code.DEADLINE_EXCEEDED);
    expect(err.message).toBe('task-service did not answer "hold" within 200 ms');
    nc.publish('test.release.typed-client');
  });

  it('refuses a reply that does not match its contract: INTERNAL naming service and operation', async () => {
    // The server checks its own replies under test...
    const served = await failure(call(nc, TestApi, 'liar', {}));
    expect(served.code).toBe(Code.INTERNAL);
    expect(served.message).toBe(
      'task-service liar: the reply does not match its contract: count: Invalid input: expected number, received string',
    );
    // ...and the client checks whatever comes back, whoever sent it.
    const node = randomNode();
    const sub = nc.subscribe(subjectOf(SnapshotApi, 'stat', node), {
      max: 1,
      callback: (_e, m) => m.respond(json.encode({ name: 'x', kind: 'sideways', labels: {} })),
    });
    const err = await failure(call(nc, SnapshotApi, 'stat', { key: 'x' }, { node }));
    expect(err.code).toBe(Code.INTERNAL);
    expect(err.message).toMatch(/^snapshot-service stat: the reply does not match its contract: kind: /);
    sub.unsubscribe();
  });
});

describe('queue group', () => {
  it('spreads requests over two replicas, and discovery sees both', async () => {
    b = await startTestService({ natsUrl: nats.url, redisUrl: redis.url });
    const n = 60;
    const replies = await Promise.all(
      Array.from({ length: n }, (_, i) =>
        call(nc, TestApi, 'echo', { text: String(i) }, { timeoutMs: 5000 }),
      ),
    );
    const counts = new Map<number, number>();
    for (const r of replies) counts.set(r.pid, (counts.get(r.pid) ?? 0) + 1);
    expect([...counts.keys()].sort()).toEqual([a.proc.pid, b.proc.pid].sort());
    // Random choice in the queue group: each replica getting fewer than 10 of 60 is ~1e-6 likely.
    for (const c of counts.values()) expect(c).toBeGreaterThanOrEqual(10);

    const srv = nc.services.client();
    const pings = [];
    for await (const p of await srv.ping('task-service')) pings.push(p);
    expect(pings).toHaveLength(2);
    expect(new Set(pings.map((p) => p.metadata?.pid))).toEqual(
      new Set([String(a.proc.pid), String(b.proc.pid)]),
    );
    let echoed = 0;
    for await (const s of await srv.stats('task-service')) {
      echoed += s.endpoints?.find((e) => e.name === 'echo')?.num_requests ?? 0;
    }
    expect(echoed).toBeGreaterThanOrEqual(n);
    await b.stop();
    b = undefined;
  });
});

describe('error mapping over the wire', () => {
  it.each(Object.values(Code))('%s keeps its code and message and the NATS numeric code', async (code) => {
    const message = `snapshot "k-${code}" refused: ${code.toLowerCase()}`;
    const err = await failure(call(nc, TestApi, 'fail', { code, message }, { timeoutMs: 5000 }));
    expect(err.code).toBe(code);
    expect(err.message).toBe(message);

    const raw = await nc.request(subjectOf(TestApi, 'fail'), json.encode({ code, message }), {
      timeout: 5000,
    });
    expect(raw.headers?.get('Nats-Service-Error-Code')).toBe(String(natsCodeOf[code]));
    expect(raw.headers?.get('Nats-Service-Error')).toBe(message);
  });

  it('turns an unknown thrown error into INTERNAL without a stack', async () => {
    const err = await failure(call(nc, TestApi, 'crash', { message: 'disk on fire' }, { timeoutMs: 5000 }));
    expect(err.code).toBe(Code.INTERNAL);
    expect(err.message).toBe('disk on fire');
    const raw = await nc.request(subjectOf(TestApi, 'crash'), json.encode({ message: 'disk on fire' }), {
      timeout: 5000,
    });
    expect(json.decode(raw.data)).toEqual({ error: { code: 'INTERNAL', message: 'disk on fire' } });
    expect(new TextDecoder().decode(raw.data)).not.toMatch(/test-service|\.mjs|\n\s+at /);
  });

  it('sends back an error whose message has CR/LF (a NATS header cannot hold them) exactly', async () => {
    const err = await failure(
      call(nc, TestApi, 'fail', { code: 'NOT_FOUND', message: 'container "a\nb" not found\r' }),
    );
    expect(err.code).toBe(Code.NOT_FOUND);
    expect(err.message).toBe('container "a\nb" not found\r');
  });

  it('refuses a namespace that is not a name (a path would reach keys and directories)', async () => {
    for (const namespace of ['../../tmp', 'a/b', 'x\ny', '.hidden']) {
      // The client refuses to send it...
      const err = await failure(call(nc, TestApi, 'echo', { text: 'x' }, { namespace }));
      expect(err.code, namespace).toBe(Code.INVALID_ARGUMENT);
      expect(err.message).toContain(`invalid namespace ${JSON.stringify(namespace)}`);
    }
    // ...and the server refuses one sent by hand.
    const h = natsHeaders();
    h.set('berth-namespace', '../../tmp');
    const raw = await nc.request(subjectOf(TestApi, 'echo'), json.encode({ text: 'x' }), {
      timeout: 5000,
      headers: h,
    });
    expect(raw.headers?.get('Nats-Service-Error-Code')).toBe(String(natsCodeOf.INVALID_ARGUMENT));
    expect((json.decode(raw.data) as { error: { message: string } }).error.message).toContain(
      'invalid namespace',
    );
    expect((await call(nc, TestApi, 'trace', {}, { namespace: 'k8s.io' })).namespace).toBe('k8s.io');
  });

  it('refuses bad input with INVALID_ARGUMENT naming the field', async () => {
    // Wrong on purpose: the server must refuse what a caller without our types might send.
    const wrongType = await failure(call(nc, TestApi, 'echo', { text: 5 as unknown as string }));
    expect(wrongType.code).toBe(Code.INVALID_ARGUMENT);
    expect(wrongType.message).toMatch(/^task-service echo: invalid text: /);
    const missing = await failure(
      call(nc, TestApi, 'fail', { code: 'NOT_FOUND' } as { code: string; message: string }),
    );
    expect(missing.code).toBe(Code.INVALID_ARGUMENT);
    expect(missing.message).toContain('invalid message');

    const raw = await nc.request(subjectOf(TestApi, 'echo'), new TextEncoder().encode('{not json'), {
      timeout: 5000,
    });
    expect(raw.headers?.get('Nats-Service-Error-Code')).toBe('400');
    expect(json.decode(raw.data)).toEqual({
      error: { code: 'INVALID_ARGUMENT', message: 'task-service echo: request body is not valid JSON' },
    });
  });

  it('maps a bare NATS service error (no berth body) from its numeric code', async () => {
    const node = randomNode();
    const svc = await nc.services.add({ name: 'foreign', version: '0.0.1' });
    svc.addEndpoint('stat', {
      subject: subjectOf(SnapshotApi, 'stat', node),
      handler: (_err, msg) => msg.respondError(404, 'snapshot "x" not found'),
    });
    const err = await failure(call(nc, SnapshotApi, 'stat', { key: 'x' }, { node, timeoutMs: 5000 }));
    expect(err.code).toBe(Code.NOT_FOUND);
    expect(err.message).toBe('snapshot "x" not found');
    await svc.stop();
  });
});

describe('oversized messages', () => {
  it('answers INTERNAL naming the operation when a reply exceeds max_payload', async () => {
    const ok = await call(nc, TestApi, 'big', { bytes: 1000 }, { timeoutMs: 5000 });
    expect(ok.data).toHaveLength(1000);
    const err = await failure(call(nc, TestApi, 'big', { bytes: 2_000_000 }, { timeoutMs: 5000 }));
    expect(err.code).toBe(Code.INTERNAL);
    expect(err.message).toMatch(/^task-service big: could not send the reply: /);
    // The service survived it.
    expect((await call(nc, TestApi, 'echo', { text: 'still here' }, { timeoutMs: 5000 })).text).toBe(
      'still here',
    );
  });

  it('refuses a request over max_payload with RESOURCE_EXHAUSTED before sending it', async () => {
    const err = await failure(
      call(nc, TestApi, 'echo', { text: 'y'.repeat(2_000_000) }, { timeoutMs: 5000 }),
    );
    expect(err.code).toBe(Code.RESOURCE_EXHAUSTED);
    expect(err.message).toBe(`request to task-service "echo" is larger than the NATS server's max_payload`);
  });
});

describe('timeouts and missing services', () => {
  it('fails with DEADLINE_EXCEEDED naming the service and operation', async () => {
    const started = Date.now();
    const err = await failure(call(nc, TestApi, 'hold', { id: 'timeout' }, { timeoutMs: 300 }));
    expect(Date.now() - started).toBeGreaterThanOrEqual(290);
    expect(err.code).toBe(Code.DEADLINE_EXCEEDED);
    expect(err.message).toBe('task-service did not answer "hold" within 300 ms');
    nc.publish('test.release.timeout');
  });

  it('fails fast with UNAVAILABLE naming the service when nothing answers', async () => {
    const node = randomNode();
    const started = Date.now();
    const err = await failure(call(nc, ImageApi, 'pull', { ref: 'busybox' }, { node, timeoutMs: 20_000 }));
    // No-responders comes straight back from the server: nowhere near the 20 s timeout.
    expect(Date.now() - started).toBeLessThan(2000);
    expect(err.code).toBe(Code.UNAVAILABLE);
    expect(err.message).toBe(
      `image-service is unavailable: no responder for "pull" on berth.${node}.image.v1.pull`,
    );
  });

  it('serves a plain NATS request that carries no berth headers', async () => {
    const h = natsHeaders();
    h.set('x-other', '1');
    const raw = await nc.request(subjectOf(TestApi, 'echo'), json.encode({ text: 'plain' }), {
      timeout: 5000,
      headers: h,
    });
    expect(json.decode(raw.data)).toEqual({ text: 'plain', pid: a.proc.pid });
  });
});
