import { Writable } from 'node:stream';
import { BerthError, Code, Principal, subjectOf } from '@berth/api';
import { startNats } from '@berth/testing';
import type { NatsConnection } from 'nats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call } from './client.js';
import { allowList, enableLocalRoutes, setLocalCaller, subjectMatches } from './local-route.js';
import { createLogger } from './logger.js';
import { connectNats } from './nats.js';
import { natsPermissions } from './permissions.js';
import { type ServedService, serve } from './service.js';
import { failure } from './testdata/failure.js';
import { RouteApi } from './testdata/route-api.js';

// Calls between the services of one process (`berth up --cohosted`) go in process. To tell the
// in-process path from NATS, the callee serves on one nats-server and its callers are connected to
// another: over NATS nothing would answer them (no responders).

const NODE = 'local-route-node';

let natsA: Awaited<ReturnType<typeof startNats>>;
let natsB: Awaited<ReturnType<typeof startNats>>;
let callee: NatsConnection;
/** Connected to the other server, as the gateway: the task-service is among what it calls. */
let gateway: NatsConnection;
/** Connected to the other server, as the snapshot-service: it never calls the task-service. */
let snapshot: NatsConnection;
let served: ServedService | undefined;
const held = new Map<string, () => void>();
/** The callee's access lines. */
const accessLines: { op?: string; outcome?: string; via?: string }[] = [];
const logSink = new Writable({
  write(chunk: Buffer, _enc, done) {
    const line = JSON.parse(chunk.toString('utf8')) as { msg?: string; op?: string; via?: string };
    if (line.msg === 'request') accessLines.push(line);
    done();
  },
});

async function start(): Promise<ServedService> {
  return serve({
    nc: callee,
    service: RouteApi,
    version: '0.0.0',
    node: NODE,
    log: createLogger({ service: 'task-service', node: NODE, level: 'info', destination: logSink }),
    handlers: {
      echo: async ({ text }, ctx) => ({ text, namespace: ctx.namespace, by: 'callee' }),
      fail: async ({ code, message }) => {
        throw new BerthError(code as Code, message);
      },
      hold: ({ id }) => new Promise((resolve) => held.set(id, () => resolve({ id }))),
    },
  });
}

beforeAll(async () => {
  [natsA, natsB] = await Promise.all([startNats({ jetstream: false }), startNats({ jetstream: false })]);
  callee = await connectNats({ url: natsA.url, name: 'local-route-callee' });
  gateway = await connectNats({ url: natsB.url, name: 'local-route-gateway' });
  snapshot = await connectNats({ url: natsB.url, name: 'local-route-snapshot' });
  setLocalCaller(gateway, allowList(natsPermissions(Principal.cri, NODE).publish));
  setLocalCaller(snapshot, allowList(natsPermissions(Principal.snapshot, NODE).publish));
  served = await start();
});

afterAll(async () => {
  await served?.stop(1000);
  await Promise.all([callee?.close(), gateway?.close(), snapshot?.close()]);
  await Promise.all([natsA?.stop(), natsB?.stop()]);
});

describe('NATS subject patterns', () => {
  it('match as nats-server matches them', () => {
    const m = (p: string, s: string) => subjectMatches(p.split('.'), s.split('.'));
    expect(m('berth.task.v1.>', 'berth.task.v1.create')).toBe(true);
    expect(m('berth.task.v1.>', 'berth.task.v1')).toBe(false);
    expect(m('berth.*.shim.v1.exec', 'berth.n1.shim.v1.exec')).toBe(true);
    expect(m('berth.*.shim.v1.exec', 'berth.n1.shim.v1.exec.x')).toBe(false);
    expect(m('berth.n1.shim.v1.exec', 'berth.n2.shim.v1.exec')).toBe(false);
    expect(m('berth.task.v1.get', 'berth.task.v1.getx')).toBe(false);
    expect(m('>', 'a')).toBe(true);
  });
});

describe('calls between the services of one process', () => {
  it('go over NATS until the process turns in-process routes on', async () => {
    const err = await failure(call(gateway, RouteApi, 'echo', { text: 'x' }));
    expect(err.code).toBe(Code.UNAVAILABLE);
    expect(err.message).toMatch(/no responder/);
  });

  it('are answered in process once it does, with the namespace, errors and input checks of NATS', async () => {
    enableLocalRoutes();
    await expect(
      call(gateway, RouteApi, 'echo', { text: 'héllo' }, { namespace: 'k8s.io' }),
    ).resolves.toEqual({
      text: 'héllo',
      namespace: 'k8s.io',
      by: 'callee',
    });
    // The callee's access line tells an in-process request from one over NATS.
    await expect.poll(() => accessLines.at(-1)).toMatchObject({ op: 'echo', outcome: 'OK', via: 'process' });
    const refused = await failure(
      call(gateway, RouteApi, 'fail', {
        code: Code.NOT_FOUND,
        message: 'container "c1" not found\nsecond line',
      }),
    );
    expect(refused.code).toBe(Code.NOT_FOUND);
    expect(refused.message).toBe('container "c1" not found\nsecond line');
    const bad = await failure(call(gateway, RouteApi, 'echo', { text: 7 } as unknown as { text: string }));
    expect(bad.code).toBe(Code.INVALID_ARGUMENT);
    expect(bad.message).toBe(
      'task-service echo: invalid text: Invalid input: expected string, received number',
    );
  });

  it('are not routed for a caller whose NATS user may not publish the subject', async () => {
    expect(natsPermissions(Principal.snapshot, NODE).publish).not.toContain(subjectOf(RouteApi, '>'));
    const err = await failure(call(snapshot, RouteApi, 'echo', { text: 'x' }));
    expect(err.code).toBe(Code.UNAVAILABLE);
    expect(err.message).toMatch(/no responder/);
  });

  it('time out and refuse an oversized request as NATS does', async () => {
    const late = await failure(call(gateway, RouteApi, 'hold', { id: 'late' }, { timeoutMs: 150 }));
    expect(late.code).toBe(Code.DEADLINE_EXCEEDED);
    expect(late.message).toBe('task-service did not answer "hold" within 150 ms');
    held.get('late')?.();
    const max = gateway.info?.max_payload ?? 0;
    expect(max).toBeGreaterThan(0);
    const big = await failure(call(gateway, RouteApi, 'echo', { text: 'x'.repeat(max) }));
    expect(big.code).toBe(Code.RESOURCE_EXHAUSTED);
    // Under max_payload alone, over it with its headers (namespace, traceparent): NATS counts both.
    const edge = await failure(call(gateway, RouteApi, 'echo', { text: 'x'.repeat(max - 20) }));
    expect([edge.code, edge.message]).toEqual([
      Code.RESOURCE_EXHAUSTED,
      `request to task-service "echo" is larger than the NATS server's max_payload`,
    ]);
  });

  it('count as in flight for the callee stopping, and go back to NATS once it has stopped', async () => {
    const pending = call(gateway, RouteApi, 'hold', { id: 'inflight' });
    await expect.poll(() => held.has('inflight')).toBe(true);
    expect(served?.inflight()).toBe(1);
    const stopping = served?.stop(5000);
    held.get('inflight')?.();
    await expect(pending).resolves.toEqual({ id: 'inflight' });
    await stopping;
    served = undefined;
    const err = await failure(call(gateway, RouteApi, 'echo', { text: 'x' }));
    expect(err.code).toBe(Code.UNAVAILABLE);
    served = await start();
    await expect(call(gateway, RouteApi, 'echo', { text: 'back' })).resolves.toMatchObject({ text: 'back' });
  });
});
