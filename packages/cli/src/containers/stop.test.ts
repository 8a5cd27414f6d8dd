// `berth stop` against a scripted task-service on a real nats-server: the kills it is sent and the
// states it answers are the test's, so a kill that is lost or refused, or an exit that never shows,
// can be made at will. The contract under test is stop's with the task-service's answers.
import {
  BerthError,
  Code,
  type ContainerInfo,
  type KillRequest,
  type ProcessState,
  TaskApi,
} from '@berth/api';
import { createLogger, type Handlers, type ServedService, serve } from '@berth/kit';
import { connectNats } from '@berth/kit/nats';
import { startNats, type TestServer } from '@berth/testing';
import type { NatsConnection } from 'nats';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { CliContext } from '../context.js';
import { runningContainer } from '../testdata/running-container.js';
import { stopOne } from './stop.js';

const ID = 'cd'.repeat(32);
const info: ContainerInfo = runningContainer(ID);

/** What the scripted task-service does; each case sets it. */
interface Script {
  /** Answers a kill (after it was counted); throw to refuse it. */
  kill(req: KillRequest): void;
  /** The state `state` answers. */
  state(): ProcessState;
}

let nats: TestServer;
let nc: NatsConnection;
let served: ServedService;
let script: Script;
let kills: string[] = [];
const running: ProcessState = { id: ID, status: 'running', pid: 42 };
const stopped: ProcessState = {
  id: ID,
  status: 'stopped',
  pid: 42,
  exitCode: 137,
  exitedAt: '2026-01-01T00:00:00Z',
};

beforeAll(async () => {
  nats = await startNats({ jetstream: false });
  nc = await connectNats({ url: nats.url, name: 'stop-test' });
  const own: Partial<Handlers<typeof TaskApi>> = {
    'get-container': async () => info,
    kill: async (req) => {
      kills.push(String(req.signal ?? ''));
      script.kill(req);
      return {};
    },
    state: async () => script.state(),
  };
  const handlers = new Proxy(own, {
    get: (t, op) =>
      t[op as keyof typeof t] ??
      (async () => {
        throw new BerthError(Code.UNIMPLEMENTED, `test task-service has no ${String(op)}`);
      }),
  }) as Handlers<typeof TaskApi>;
  const log = createLogger({ service: 'task-service', node: 'n1', level: 'silent' });
  served = await serve({ nc, service: TaskApi, version: '0.0.0', node: 'n1', log, handlers });
});

afterAll(async () => {
  await served?.stop(1000);
  await nc?.close();
  await nats?.stop();
});

beforeEach(() => {
  kills = [];
});

/** What stopOne uses of a CLI context: NATS, the namespace, the node and stderr. */
function context(): CliContext {
  const sink = { write: () => true };
  const ctx = { nats: async () => nc, namespace: 'default', config: { nodeId: 'n1' }, out: sink, err: sink };
  return ctx as unknown as CliContext;
}

// Fast forms of the real bounds (30 s, every 5 s): the same code paths, in a test's time. A
// re-send still on its way at the bound is answered before stop returns.
const fast = { seconds: 0, killWaitMs: 1_400, killResendMs: 300 };

describe('stop', () => {
  it('sends SIGKILL again while it waits: a lost SIGKILL does not keep the container running', async () => {
    // The first SIGKILL "is lost" (the task keeps running); the second one stops it.
    let sigkills = 0;
    script = {
      kill: (req) => {
        if (req.signal === 'SIGKILL') sigkills++;
      },
      state: () => (sigkills >= 2 ? stopped : running),
    };
    // A bound the exit shows well within (the waiter asks the state every second).
    await expect(stopOne('web', context(), { ...fast, killWaitMs: 10_000 })).resolves.toBe('web');
    expect(kills.slice(0, 3)).toEqual(['SIGTERM', 'SIGKILL', 'SIGKILL']);
  }, 15_000);

  it('gives up after its bound naming the container, the last state and the last kill error', async () => {
    script = {
      kill: (req) => {
        // "Not running" says the task-service, while the state it answers still shows it running
        // (its exit not recorded yet): stop waits for the exit, sending SIGKILL again meanwhile.
        if (req.signal === 'SIGKILL') {
          throw new BerthError(Code.FAILED_PRECONDITION, 'container "web" is not running');
        }
      },
      state: () => running,
    };
    const started = Date.now();
    const err = await stopOne('web', context(), fast).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BerthError);
    expect((err as BerthError).code).toBe(Code.DEADLINE_EXCEEDED);
    expect((err as Error).message).toMatch(
      /^container "web" did not exit within 1\.4 s of SIGKILL \(sent [3-6] times\); last state running \(pid 42, \d+\.\d s ago\); the last kill failed: FAILED_PRECONDITION: container "web" is not running$/,
    );
    // Within its bound (and the grace of 0 s), not after some outer timeout.
    expect(Date.now() - started).toBeLessThan(5_000);
    // SIGKILL was tried again meanwhile, every killResendMs, as many times as the message says.
    const sent = Number(/sent (\d+) times/.exec((err as Error).message)?.[1]);
    expect(kills.filter((k) => k === 'SIGKILL').length).toBe(sent);
  }, 15_000);

  it('sends SIGKILL at once when the stop signal failed (INTERNAL from runc), as docker stop does', async () => {
    const broken =
      'task "web": runc kill failed: lstat /sys/fs/cgroup/devices/web: no such file or directory';
    let sigkilled = false;
    script = {
      kill: (req) => {
        if (req.signal === 'SIGTERM') throw new BerthError(Code.INTERNAL, broken);
        sigkilled = true;
      },
      state: () => (sigkilled ? stopped : running),
    };
    const said: string[] = [];
    const ctx = { ...context(), err: { write: (s: string) => said.push(s) } } as unknown as CliContext;
    // A grace period of 10 s: a failed stop signal is not waited out.
    const started = Date.now();
    await expect(stopOne('web', ctx, { ...fast, seconds: 10, killWaitMs: 10_000 })).resolves.toBe('web');
    expect(kills.slice(0, 2)).toEqual(['SIGTERM', 'SIGKILL']);
    expect(said.join('')).toContain(`web: stop signal SIGTERM: ${broken}; sending SIGKILL`);
    expect(Date.now() - started).toBeLessThan(5_000);
  }, 15_000);

  it('ends at once with a SIGKILL that failed (INTERNAL from runc), not taken as "not running"', async () => {
    const broken =
      'task "web": runc kill failed: lstat /sys/fs/cgroup/devices/web: no such file or directory';
    for (const failing of [['SIGTERM', 'SIGKILL'], ['SIGKILL']]) {
      kills = [];
      script = {
        kill: (req) => {
          if (failing.includes(String(req.signal))) throw new BerthError(Code.INTERNAL, broken);
        },
        state: () => running,
      };
      const started = Date.now();
      const err = await stopOne('web', context(), fast).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(BerthError);
      expect([(err as BerthError).code, (err as Error).message]).toEqual([Code.INTERNAL, broken]);
      // SIGKILL once, not resent: its failure ends the stop.
      expect(kills).toEqual(['SIGTERM', 'SIGKILL']);
      expect(Date.now() - started).toBeLessThan(2_000);
    }
  }, 15_000);
});
