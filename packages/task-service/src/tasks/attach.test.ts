// How a task's create attaches a bridge container's network (TaskManager.createLocked), against a
// real Redis; the node's shim is a recorder answering as a shim would: one that knows
// startAttached (attaches and starts in its create) or an older one that strips it (replies
// `created`, unattached). What is checked is the calls' order and what the store keeps: the
// container's addresses and its task. tests/e2e/network.test.ts runs the real thing.
import { randomBytes } from 'node:crypto';
import type { Container, ShimCreateRequest, ShimState } from '@berth/api';
import { connectRedis, createLogger, type Redis } from '@berth/kit';
import { startRedis, type TestServer } from '@berth/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ContainerManager } from '../containers/manager.js';
import type { Deps } from '../deps.js';
import { ContainerStore } from '../store/store.js';
import { TaskManager } from './manager.js';

const ns = 'attach';
const node = 'n1';
const ADDRESS = { address: '10.88.0.7/16', version: 4 as const, gateway: '10.88.0.1' };
let server: TestServer;
let redis: Redis;
let store: ContainerStore;

/**
 * A recorder of shim calls; `knowsStartAttached` false is a shim older than that field;
 * `failSetup`: its network-setup fails (a CNI ADD that fails).
 */
function shim(knowsStartAttached: boolean, failSetup = false) {
  const calls: { op: string; req: Record<string, unknown> }[] = [];
  const state = (req: { id: string }, status: ShimState['status']): ShimState => ({
    namespace: ns,
    id: req.id,
    status,
    pid: 4242,
    ...(status === 'running' ? { startedAt: new Date().toISOString() } : {}),
  });
  const client = {
    create: async (req: ShimCreateRequest) => {
      const { startAttached, ...rest } = req;
      calls.push({ op: 'create', req: knowsStartAttached ? req : rest });
      if (knowsStartAttached && startAttached)
        return { ...state(req, 'running'), network: { ips: [ADDRESS] } };
      return state(req, rest.start ? 'running' : 'created');
    },
    start: async (req: { id: string }) => {
      calls.push({ op: 'start', req });
      return state(req, 'running');
    },
    delete: async (req: { id: string }) => {
      calls.push({ op: 'delete', req });
      return state(req, 'stopped');
    },
    'network-setup': async (req: { podId: string }) => {
      calls.push({ op: 'network-setup', req });
      if (failSetup) throw new Error('CNI plugin "bridge" ADD failed: no IP addresses available');
      return {
        podId: req.podId,
        netnsPath: `/run/berth/netns/${req.podId}`,
        ips: [ADDRESS],
        network: 'berth',
      };
    },
  };
  const deps = {
    shim: () => client,
    snapshots: () => ({ mounts: async () => ({ mounts: [] }) }),
    publish: () => undefined,
  } as unknown as Deps;
  const log = createLogger({ service: 'task-service', node, level: 'silent' });
  const tasks = new TaskManager(store, new ContainerManager(store, redis, deps, { node }), deps, log);
  return { calls, tasks, ops: () => calls.map((c) => c.op) };
}

/** A bridge container whose namespace is pinned but not attached (no addresses), as `run` makes it. */
async function unattached(): Promise<Container> {
  const id = randomBytes(32).toString('hex');
  const now = new Date().toISOString();
  const c: Container = {
    id,
    namespace: ns,
    name: `c-${id.slice(0, 6)}`,
    image: { name: 'busybox', digest: `sha256:${'0'.repeat(64)}` },
    node,
    spec: { process: { args: ['sleep', '300'] } },
    snapshotKey: `containers/${ns}/${id}`,
    rootfs: [],
    labels: {},
    runtime: { name: 'io.berth.runc' },
    io: { terminal: false, stdin: false },
    stopSignal: 'SIGTERM',
    config: {
      image: 'busybox',
      network: 'bridge',
      ports: [{ hostPort: 8080, containerPort: 80, protocol: 'tcp' }],
    },
    network: { netnsPath: `/run/berth/netns/${id}`, ips: [] },
    createdAt: now,
    updatedAt: now,
  };
  await store.put(c);
  return c;
}

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

const PORTS = [{ hostPort: 8080, containerPort: 80, protocol: 'tcp' }];

describe('a task create attaching its bridge container', () => {
  it('without start: network-setup first, then a plain create; the addresses are recorded', async () => {
    const s = shim(true);
    const c = await unattached();
    const t = await s.tasks.create(ns, c.id);
    expect(t.status).toBe('created');
    expect(s.ops()).toEqual(['network-setup', 'create']);
    expect(s.calls[0]?.req).toEqual({ podId: c.id, portMappings: PORTS });
    expect(s.calls[1]?.req).not.toHaveProperty('startAttached');
    expect((await store.get(ns, c.id))?.network?.ips).toEqual(['10.88.0.7']);
  });

  it('with start (`berth start`): the shim attaches and starts in its create; the addresses are recorded', async () => {
    const s = shim(true);
    const c = await unattached();
    const t = await s.tasks.create(ns, c.id, { start: true });
    expect(t.status).toBe('running');
    expect(s.ops()).toEqual(['create']);
    expect(s.calls[0]?.req).toMatchObject({ netnsPod: c.id, startAttached: { portMappings: PORTS } });
    expect((await store.get(ns, c.id))?.network?.ips).toEqual(['10.88.0.7']);
    expect((await store.getTask(ns, c.id))?.status).toBe('running');
  });

  it('with start on a shim without startAttached: created, then network-setup, then start', async () => {
    const s = shim(false);
    const c = await unattached();
    const t = await s.tasks.create(ns, c.id, { start: true });
    expect(t.status).toBe('running');
    expect(s.ops()).toEqual(['create', 'network-setup', 'start']);
    expect(s.calls[1]?.req).toEqual({ podId: c.id, portMappings: PORTS });
    expect((await store.get(ns, c.id))?.network?.ips).toEqual(['10.88.0.7']);
    expect((await store.getTask(ns, c.id))?.status).toBe('running');
  });

  it('with start on a shim without startAttached whose attach fails: the created task is deleted', async () => {
    const s = shim(false, true);
    const c = await unattached();
    await expect(s.tasks.create(ns, c.id, { start: true })).rejects.toThrow(/ADD failed/);
    expect(s.ops()).toEqual(['create', 'network-setup', 'delete']);
    expect(s.calls[2]?.req).toEqual({ namespace: ns, id: c.id });
    expect(await store.getTask(ns, c.id)).toBeUndefined();
    expect((await store.get(ns, c.id))?.network?.ips).toEqual([]);
  });

  it("passes the shim what is left of its own caller's time to start the task, and nothing without one", async () => {
    const s = shim(true);
    const c = await unattached();
    const startBy = Date.now() + 3_000;
    await s.tasks.create(ns, c.id, { start: true, startBy });
    const left = s.calls[0]?.req.startWithinMs as number;
    expect(left).toBeGreaterThan(0);
    expect(left).toBeLessThanOrEqual(3_000);
    const plain = shim(true);
    const d = await unattached();
    await plain.tasks.create(ns, d.id, { start: true });
    expect(plain.calls[0]?.req).not.toHaveProperty('startWithinMs');
  });
});
