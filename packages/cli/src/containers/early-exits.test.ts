import { type TaskExit, TaskTopic } from '@berth/api';
import { publishEvent } from '@berth/kit/events';
import { startNats, type TestServer } from '@berth/testing';
import { connect, type NatsConnection } from 'nats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CliContext } from '../context.js';
import { earlyExits } from './api.js';

let nats: TestServer;
let listener: NatsConnection;
let shim: NatsConnection;

beforeAll(async () => {
  nats = await startNats({ jetstream: false });
  [listener, shim] = await Promise.all([connect({ servers: nats.url }), connect({ servers: nats.url })]);
});
afterAll(async () => {
  await Promise.all([listener?.close(), shim?.close()]);
  await nats?.stop();
});

/** Only what earlyExits uses of a CLI context: its NATS connection. */
const ctx = { nats: async () => listener } as unknown as CliContext;

const exit = (id: string, exitCode: number, more: Partial<TaskExit> = {}): TaskExit => ({
  namespace: 'default',
  id,
  pid: 42,
  exitCode,
  exitedAt: '2026-12-02T07:00:00.000Z',
  node: 'n1',
  ...more,
});

describe('earlyExits (berth run before its reply names the container)', () => {
  it('keeps an exit that came before the id was asked for, and takes one that comes after', async () => {
    const early = await earlyExits(ctx, 'default');
    // The exits come from another connection (the CLI's request, after its SUB on the same
    // connection, is what orders them in a run): the SUB must have reached the server first.
    await listener.flush();
    try {
      // Other namespaces and exec processes are not the task's exit.
      publishEvent(shim, TaskTopic.taskExit, 'other', exit('a', 9, { namespace: 'other' }));
      publishEvent(shim, TaskTopic.taskExit, 'default', exit('a', 8, { execId: 'exec-1' }));
      publishEvent(shim, TaskTopic.taskExit, 'default', exit('a', 3, { reason: 'Error' }));
      await shim.flush();
      await listener.flush();
      await expect(early.of('a')).resolves.toEqual({
        exitCode: 3,
        exitedAt: '2026-12-02T07:00:00.000Z',
        reason: 'Error',
      });
      const later = early.of('b');
      publishEvent(shim, TaskTopic.taskExit, 'default', exit('b', 0));
      await expect(later).resolves.toEqual({ exitCode: 0, exitedAt: '2026-12-02T07:00:00.000Z' });
    } finally {
      early.close();
    }
  });

  it('hears nothing once closed', async () => {
    const open = await earlyExits(ctx, 'default');
    const closed = await earlyExits(ctx, 'default');
    closed.close();
    await listener.flush();
    try {
      publishEvent(shim, TaskTopic.taskExit, 'default', exit('c', 1));
      await shim.flush();
      // The server sends the exit before the answer to this flush: both listeners had their chance.
      await listener.flush();
      await expect(open.of('c')).resolves.toMatchObject({ exitCode: 1 });
      const heard = await Promise.race([
        closed.of('c').then(() => 'exit'),
        new Promise((r) => setImmediate(() => r('nothing'))),
      ]);
      expect(heard).toBe('nothing');
    } finally {
      open.close();
    }
  });
});
