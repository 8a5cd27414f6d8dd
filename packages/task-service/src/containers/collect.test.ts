import { randomBytes } from 'node:crypto';
import { BerthError, Code, type Container, type Task } from '@berth/api';
import { connectRedis, keys, type Redis, withLock } from '@berth/kit';
import { startRedis, type TestServer } from '@berth/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Deps } from '../deps.js';
import { ContainerStore } from '../store/store.js';
import { dropUnrecordedTasks, freeOnNode, releaseNetworkMeanwhile } from './collect.js';

// releaseNetworkMeanwhile against a real Redis (the store and the container lock); the node's shim
// is a recorder of network-teardown calls: what is checked is whether the removal may tear the
// network down yet, not the CNI DEL itself (tests/e2e/network.test.ts runs that on real plugins).

let server: TestServer;
let redis: Redis;
let store: ContainerStore;
const teardowns: string[] = [];
const deps = {
  shim: () => ({
    'network-teardown': async (req: { podId: string }) => {
      teardowns.push(req.podId);
      return { errors: [] };
    },
  }),
} as unknown as Deps;
const LOCK = { ttlMs: 30_000, waitMs: 10_000, what: 'test container' };
const lockOf = (c: Container) => (fn: () => Promise<boolean>) =>
  withLock(redis, keys.containerLock(c.namespace, c.id), LOCK, fn);

beforeAll(async () => {
  server = await startRedis();
  redis = connectRedis(server.url);
  await redis.connect();
  store = new ContainerStore(redis);
});
afterAll(async () => {
  await redis?.quit();
  await server?.stop();
});

function container(network: 'bridge' | 'none'): Container {
  const id = randomBytes(32).toString('hex');
  const now = new Date().toISOString();
  return {
    id,
    namespace: 'ns',
    name: `c-${id.slice(0, 6)}`,
    image: { name: 'busybox', digest: `sha256:${'0'.repeat(64)}` },
    node: 'n1',
    spec: {},
    snapshotKey: `containers/ns/${id}`,
    labels: {},
    runtime: { name: 'io.berth.runc' },
    io: { terminal: false, stdin: false },
    stopSignal: 'SIGTERM',
    config: { image: 'busybox', network },
    createdAt: now,
    updatedAt: now,
  };
}

function task(c: Container, createdAt: string): Task {
  return { id: c.id, namespace: c.namespace, node: c.node, status: 'stopped', pid: 1, createdAt };
}

describe('releaseNetworkMeanwhile', () => {
  it('starts the teardown of a bridge container whose task is still the one the removal saw', async () => {
    const c = container('bridge');
    const seen = task(c, '2026-12-02T00:00:00.000Z');
    await store.putTask(seen);
    const started = await releaseNetworkMeanwhile(deps, store, lockOf(c), c, seen);
    expect(started).toBeDefined();
    await started?.released;
    expect(teardowns).toContain(c.id);
  });

  it('starts nothing for a container without the bridge network', async () => {
    const c = container('none');
    const seen = task(c, '2026-12-02T00:00:00.000Z');
    await store.putTask(seen);
    expect(await releaseNetworkMeanwhile(deps, store, lockOf(c), c, seen)).toBeUndefined();
    expect(teardowns).not.toContain(c.id);
  });

  it('waits out a create holding the lock, and keeps the network of the task it made', async () => {
    const c = container('bridge');
    const seen = task(c, '2026-12-02T00:00:00.000Z');
    await store.putTask(seen);
    let entered!: () => void;
    const inLock = new Promise<void>((r) => {
      entered = r;
    });
    let finish!: () => void;
    const held = withLock(redis, keys.containerLock(c.namespace, c.id), LOCK, async () => {
      entered();
      await new Promise<void>((r) => {
        finish = r;
      });
      // The create that won the race: a new task replaces the stopped one.
      await store.putTask(task(c, '2026-12-02T00:00:01.000Z'));
    });
    await inLock;
    const pending = releaseNetworkMeanwhile(deps, store, lockOf(c), c, seen);
    finish();
    await held;
    expect(await pending).toBeUndefined();
    expect(teardowns).not.toContain(c.id);
  });
});

// freeOnNode's order against a shim modelled on the real one's rules (process-state.ts): delete
// refuses a task still running, remove-files refuses while a task exists, and a SIGKILLed task
// stops a little after the kill (here 30 ms), as runc's does once its processes are reaped.
describe('freeOnNode', () => {
  function shimWithRunningTask() {
    let status: 'running' | 'stopped' | 'gone' = 'running';
    let exited!: () => void;
    const exit = new Promise<void>((r) => {
      exited = r;
    });
    const calls: string[] = [];
    const refuse = (what: string) =>
      new BerthError(Code.FAILED_PRECONDITION, `task is ${status}: cannot ${what}`);
    const shim = {
      state: async () => ({ id: 'x', status, pid: 1 }),
      kill: async () => {
        calls.push('kill');
        setTimeout(() => {
          status = 'stopped';
          exited();
        }, 30);
        return {};
      },
      wait: async () => {
        calls.push('wait');
        await exit;
        return { exitCode: 137, exitedAt: new Date().toISOString() };
      },
      delete: async () => {
        calls.push('delete');
        if (status === 'running') throw refuse('delete');
        status = 'gone';
        return { id: 'x', status: 'stopped', pid: 1 };
      },
      'remove-files': async () => {
        calls.push('remove-files');
        if (status !== 'gone') throw refuse('remove-files');
        return {};
      },
    };
    return { shim, calls };
  }

  /** freeOnNode's dependencies around `shim`, and the snapshot keys it was asked to remove. */
  function depsOf(shim: unknown): { d: Deps; removed: string[] } {
    const removed: string[] = [];
    const d = {
      shim: () => shim,
      snapshots: () => ({
        remove: async (req: { key: string }) => {
          removed.push(req.key);
          return {};
        },
      }),
    } as unknown as Deps;
    return { d, removed };
  }

  it('waits for a task it killed to exit before deleting it, then removes its files and snapshot', async () => {
    const { shim, calls } = shimWithRunningTask();
    const { d, removed } = depsOf(shim);
    const c = container('none');
    await freeOnNode(d, c);
    expect(calls).toEqual(['kill', 'wait', 'delete', 'remove-files']);
    expect(removed).toEqual([c.snapshotKey]);
  });

  it('stops at a kill that failed (INTERNAL), not taking it for a task gone: nothing is removed', async () => {
    const { shim, calls } = shimWithRunningTask();
    const broken = 'task "x": runc kill failed: unexpected EOF';
    const failing = {
      ...shim,
      kill: async () => {
        calls.push('kill');
        throw new BerthError(Code.INTERNAL, broken);
      },
    };
    const { d, removed } = depsOf(failing);
    await expect(freeOnNode(d, container('none'))).rejects.toMatchObject({
      code: Code.INTERNAL,
      message: broken,
    });
    expect(calls).toEqual(['kill']);
    expect(removed).toEqual([]);
  });
});

// dropUnrecordedTasks against a real Redis (records, tasks and locks) and a shim that lists the
// tasks it runs and records what is done to them.
describe('dropUnrecordedTasks', () => {
  it('kills and deletes only a listed task whose container has none on record and a free lock', async () => {
    const orphan = container('none');
    const recorded = container('none');
    const creating = container('none');
    const execOnly = container('none');
    for (const c of [orphan, recorded, creating, execOnly]) await store.put(c);
    await store.putTask(task(recorded, '2026-12-02T00:00:00.000Z'));
    const calls: string[] = [];
    const running = (id: string, execId?: string) => ({
      id,
      status: 'running',
      pid: 1,
      ...(execId ? { execId } : {}),
    });
    const shim = {
      list: async () => ({
        tasks: [running(orphan.id), running(recorded.id), running(creating.id), running(execOnly.id, 'e1')],
      }),
      state: async (ref: { id: string }) => running(ref.id),
      kill: async (ref: { id: string }) => void calls.push(`kill ${ref.id}`),
      wait: async (ref: { id: string }) => {
        calls.push(`wait ${ref.id}`);
        return { exitCode: 137, exitedAt: new Date().toISOString() };
      },
      delete: async (ref: { id: string }) => {
        calls.push(`delete ${ref.id}`);
        return running(ref.id);
      },
    };
    const d = { store, redis, deps: { shim: () => shim } as unknown as Deps, lockTtlMs: 30_000 };
    const errors: unknown[] = [];
    // `recorded` got its task after the caller's read (it is read again under the lock); a create
    // of `creating` under way holds its lock: its task is about to be recorded.
    const dropped = await withLock(redis, keys.containerLock(creating.namespace, creating.id), LOCK, () =>
      dropUnrecordedTasks(d, 'ns', [orphan, recorded, creating, execOnly], (err) => errors.push(err)),
    );
    expect(errors).toEqual([]);
    expect(dropped).toBe(1);
    expect(calls).toEqual([`kill ${orphan.id}`, `wait ${orphan.id}`, `delete ${orphan.id}`]);
  });
});

describe('dropUnrecordedTasks with a task that will not go', () => {
  it('reports it and still drops the next one of the node', async () => {
    const [stuck, next] = [container('none'), container('none')];
    for (const c of [stuck, next]) await store.put(c);
    const deleted: string[] = [];
    const running = (id: string) => ({ id, status: 'running', pid: 1 });
    const shim = {
      list: async () => ({ tasks: [running(stuck.id), running(next.id)] }),
      state: async (ref: { id: string }) => running(ref.id),
      kill: async () => ({}),
      wait: async () => ({ exitCode: 137, exitedAt: new Date().toISOString() }),
      delete: async (ref: { id: string }) => {
        // A process stuck in the kernel outlives SIGKILL: its task stays running.
        if (ref.id === stuck.id)
          throw new BerthError(Code.FAILED_PRECONDITION, 'task is running: cannot delete');
        deleted.push(ref.id);
        return running(ref.id);
      },
    };
    const d = { store, redis, deps: { shim: () => shim } as unknown as Deps, lockTtlMs: 30_000 };
    const errors: unknown[] = [];
    expect(await dropUnrecordedTasks(d, 'ns', [stuck, next], (err) => errors.push(err))).toBe(1);
    expect(deleted).toEqual([next.id]);
    expect(errors.map((e) => (e as BerthError).code)).toEqual([Code.FAILED_PRECONDITION]);
  });
});
