import { defineService, op, Scope, Service } from '@berth/api';
import { connectNats, createLogger, type ServedService, serve } from '@berth/kit';
import { startNats } from '@berth/testing';
import type { NatsConnection } from 'nats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { collectStatus } from './discovery.js';

// A service under the task-service's name, as discovery sees the stack's services.
const Api = defineService({
  name: Service.task,
  scope: Scope.cluster,
  ops: {
    ping: op({ input: z.object({}), output: z.object({}), timeoutMs: 5_000, description: 'answers' }),
  },
});

let nats: Awaited<ReturnType<typeof startNats>>;
let nc: NatsConnection;
const served: ServedService[] = [];

beforeAll(async () => {
  nats = await startNats({ jetstream: false });
  nc = await connectNats({ url: nats.url, name: 'discovery-test' });
  // Two replicas on this node, one on another node.
  for (const node of ['n1', 'n1', 'n2']) {
    served.push(
      await serve({
        nc,
        service: Api,
        version: '0.0.0',
        node,
        log: createLogger({ service: 'task-service', node, level: 'silent' }),
        handlers: { ping: async () => ({}) },
      }),
    );
  }
});
afterAll(async () => {
  for (const s of served) await s.stop(1000);
  await nc?.close();
  await nats?.stop();
});

describe('collectStatus', () => {
  it('sees every replica of every node when it waits for the replies to stop', async () => {
    const status = await collectStatus(nc, { nodeId: 'n1', expected: { 'task-service': 2 } });
    const task = status.services.find((s) => s.service === 'task-service');
    expect(task?.found).toBe(2);
    expect(task?.instances.map((i) => i.node).sort()).toEqual(['n1', 'n1', 'n2']);
    expect(status.ok).toBe(true);
  });

  it('with untilExpected, has every expected replica of this node, healthy', async () => {
    const status = await collectStatus(nc, {
      nodeId: 'n1',
      expected: { 'task-service': 2 },
      untilExpected: true,
    });
    const task = status.services.find((s) => s.service === 'task-service');
    expect(task?.found).toBe(2);
    expect(task?.instances.filter((i) => i.node === 'n1').every((i) => i.health === 'healthy')).toBe(true);
    expect(status.missing).toEqual([]);
    expect(status.ok).toBe(true);
  });

  it('with untilExpected, still reports a replica this node lacks', async () => {
    const status = await collectStatus(nc, {
      nodeId: 'n1',
      expected: { 'task-service': 3 },
      untilExpected: true,
    });
    expect(status.services.find((s) => s.service === 'task-service')?.found).toBe(2);
    expect(status.missing).toEqual(['task-service has 2 of 3 replicas running on node n1']);
    expect(status.ok).toBe(false);
  });
});
