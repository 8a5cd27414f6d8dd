import { BerthError, Code, type ProcessState, TaskApi, TaskTopic } from '@berth/api';
import { startNats } from '@berth/testing';
import type { NatsConnection } from 'nats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { publishEvent } from './events.js';
import { exitWaiter } from './exit-waiter.js';
import { createLogger } from './logger.js';
import { connectNats } from './nats.js';
import { type Handlers, type ServedService, serve } from './service.js';

// The waiter against a real nats-server and a scripted task-service whose `state` answers what
// each case sets: the waiter's contract is with the task-service's answers, not its internals.

let nats: Awaited<ReturnType<typeof startNats>>;
let nc: NatsConnection;
let served: ServedService;
/** What `state` answers per container id; a missing id is NOT_FOUND. */
const states = new Map<string, ProcessState>();
const asked: string[] = [];

beforeAll(async () => {
  nats = await startNats({ jetstream: false });
  nc = await connectNats({ url: nats.url, name: 'exit-waiter-test' });
  const state = async (req: { id: string }) => {
    asked.push(req.id);
    const s = states.get(req.id);
    if (!s) throw new BerthError(Code.NOT_FOUND, `container "${req.id}" has no task`);
    return s;
  };
  served = await serveStates(nc, state);
});

/** A task-service on `conn` that answers `state` alone (with `state`); other operations are refused. */
function serveStates(conn: NatsConnection, state: (req: { id: string }) => Promise<ProcessState>) {
  const handlers = new Proxy(
    {},
    {
      get: (_t, op) =>
        op === 'state'
          ? state
          : async () => {
              throw new BerthError(Code.UNIMPLEMENTED, `test task-service has no ${String(op)}`);
            },
    },
  ) as Handlers<typeof TaskApi>;
  const log = createLogger({ service: 'task-service', node: 'n1', level: 'silent' });
  return serve({ nc: conn, service: TaskApi, version: '0.0.0', node: 'n1', log, handlers });
}

afterAll(async () => {
  await served?.stop(1000);
  await nc?.close();
  await nats?.stop();
});

const running = (id: string): ProcessState => ({ id, status: 'running', pid: 42 });
const stopped = (id: string, exitCode: number): ProcessState => ({
  id,
  status: 'stopped',
  pid: 42,
  exitCode,
  exitedAt: '2026-12-01T00:00:00Z',
});

describe('exitWaiter', () => {
  it('resolves on the exit event of its process only', async () => {
    states.set('ev', running('ev'));
    const w = await exitWaiter(nc, { namespace: 'default', id: 'ev', recheckMs: 60_000 });
    publishEvent(nc, TaskTopic.taskExit, 'other', {
      namespace: 'other',
      id: 'ev',
      exitCode: 9,
      exitedAt: 'x',
    });
    publishEvent(nc, TaskTopic.taskExit, 'default', {
      namespace: 'default',
      id: 'ev',
      exitCode: 3,
      exitedAt: 'y',
    });
    await expect(w.exited).resolves.toMatchObject({ exitCode: 3 });
  });

  it('finds an exit whose event was lost in the recorded state', async () => {
    states.set('lost', running('lost'));
    const w = await exitWaiter(nc, { namespace: 'default', id: 'lost', recheckMs: 50 });
    states.set('lost', stopped('lost', 7));
    await expect(w.exited).resolves.toMatchObject({ exitCode: 7 });
  });

  it('asks nothing before check() when told so, then rejects a process that is gone', async () => {
    const w = await exitWaiter(nc, { namespace: 'default', id: 'later', checkNow: false, recheckMs: 50 });
    await nc.flush();
    expect(asked).not.toContain('later');
    w.check();
    const err = await w.exited.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BerthError);
    expect((err as BerthError).code).toBe(Code.NOT_FOUND);
  });

  it('with check({ now: false }) asks first after recheckMs, and still finds a lost exit', async () => {
    states.set('quiet', running('quiet'));
    const w = await exitWaiter(nc, { namespace: 'default', id: 'quiet', checkNow: false, recheckMs: 50 });
    w.check({ now: false });
    await nc.flush();
    expect(asked).not.toContain('quiet');
    states.set('quiet', stopped('quiet', 4));
    await expect(w.exited).resolves.toMatchObject({ exitCode: 4 });
    expect(asked).toContain('quiet');
  });

  it('fails with DEADLINE_EXCEEDED and CANCELLED naming the process', async () => {
    states.set('slow', running('slow'));
    const t = await exitWaiter(nc, { namespace: 'default', id: 'slow', execId: 'e1', timeoutMs: 300 });
    await expect(t.exited).rejects.toMatchObject({ code: Code.DEADLINE_EXCEEDED });
    // What the task-service last said is in the message: the state it saw, not a bare timeout.
    await expect(t.exited).rejects.toThrow(
      /container "slow" exec "e1" did not exit within 300 ms \(last state running \(pid 42, /,
    );
    expect(t.lastAnswer()).toMatchObject({ state: { status: 'running', pid: 42 } });
    const ac = new AbortController();
    const c = await exitWaiter(nc, { namespace: 'default', id: 'slow', signal: ac.signal });
    ac.abort();
    await expect(c.exited).rejects.toMatchObject({ code: Code.CANCELLED });
  });

  it('fails with UNAVAILABLE once its connection closed for good, rather than waiting forever', async () => {
    // The CLI's connection does not reconnect: when its nats-server dies mid-wait it closes, and
    // every later state call fails at once. The waiter must end, saying what it last heard.
    const own = await startNats({ jetstream: false });
    const cli = await connectNats({
      url: own.url,
      name: 'exit-waiter-cli',
      extra: { waitOnFirstConnect: false, maxReconnectAttempts: 0 },
    });
    const svc = await serveStates(cli, async (req) => running(req.id));
    try {
      const w = await exitWaiter(cli, { namespace: 'default', id: 'orphan', recheckMs: 50 });
      await expect.poll(() => w.lastAnswer()).toMatchObject({ state: { status: 'running' } });
      await own.stop();
      const err = await w.exited.catch((e: unknown) => e);
      expect(err).toBeInstanceOf(BerthError);
      expect((err as BerthError).code).toBe(Code.UNAVAILABLE);
      expect((err as Error).message).toMatch(
        /^the NATS connection closed while waiting for container "orphan" to exit \(last state running \(pid 42, /,
      );
    } finally {
      await svc.stop(100).catch(() => undefined);
      await cli.close().catch(() => undefined);
      await own.stop();
    }
  }, 15_000);
});
