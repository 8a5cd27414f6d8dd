import { BerthError, Code, type ContainerInfo, type CreateContainerRequest } from '@berth/api';
import type { Logger } from '@berth/kit';
import { describe, expect, it } from 'vitest';
import type { SandboxImage } from './pause-image.js';
import { type EventFeed, PodRuntime } from './pods.js';
import type { PodNetwork, TaskPort } from './ports.js';

// PodRuntime against a task-service, a network and an event feed held in memory whose answers
// the test releases by hand: the interleavings a slow or paused service (or a lost event) makes,
// played in a fixed order. The collection of pod networks no pod owns, and when RunPodSandbox
// records the pod's addresses.

/** A promise and the function that resolves it. */
function gate() {
  let open!: () => void;
  const opened = new Promise<void>((r) => {
    open = r;
  });
  return { open, opened };
}

/**
 * The fakes. `events`: whether the runtime follows berth's events, and whether the pause task's
 * `tasks.create` reaches it (events are at-most-once: 'lost' drops it).
 */
function fakes(events: 'none' | 'delivered' | 'lost' = 'none') {
  const records = new Map<string, ContainerInfo>();
  const keys = new Set<string>();
  const torn: string[] = [];
  const steps = { setUp: gate(), listed: gate() };
  const holds = { create: gate(), listReply: gate(), start: gate() };
  // Only the tests of the addresses hold the pause's start (after its task is recorded).
  holds.start.open();
  const listeners = new Set<Parameters<EventFeed>[0]>();
  const feed: EventFeed = (onEvent) => {
    listeners.add(onEvent);
    return () => listeners.delete(onEvent);
  };
  // What each record's labels were when its task's start returned.
  const labelsAtStart = new Map<string, Record<string, string>>();
  // Failures to inject: the RunPodSandbox's last step, and the task-service for its undo.
  const fail = { update: false, delete: false };
  const ownIds = { on: false };
  const network = {
    netnsPath: (k: string) => `/run/netns/${k}`,
    setup: async (k: string) => {
      keys.add(k);
      steps.setUp.open();
      return { netnsPath: `/run/netns/${k}`, ips: ['10.0.0.2'] };
    },
    teardown: async (k: string) => {
      keys.delete(k);
      torn.push(k);
    },
    list: async () => [...keys],
  } as unknown as PodNetwork;
  const tasks = {
    createContainer: async (req: CreateContainerRequest) => {
      await holds.create.opened;
      // The gateway's chosen id, as a task-service that takes it (`ownIds`: one from before).
      const id = ownIds.on || !req.id ? `pod${records.size}` : req.id;
      const container = { id, node: 'n1', labels: req.labels ?? {} } as ContainerInfo['container'];
      records.set(id, { container, status: 'created' } as ContainerInfo);
      return container;
    },
    createTask: async (id: string, opts?: { start?: boolean; netnsPod?: string }) => {
      // The shim pins the pod's namespace at the pause's task create when setup has not yet.
      if (opts?.netnsPod) keys.add(opts.netnsPod);
      // Recorded, then (with start) started in the same call, as the task-service does.
      if (events === 'delivered') {
        for (const l of listeners) l({ topic: 'tasks.create', namespace: 'k8s.io', event: { id } });
      }
      await holds.start.opened;
      const r = records.get(id) as ContainerInfo;
      labelsAtStart.set(id, { ...r.container.labels });
      if (opts?.start) records.set(id, { ...r, status: 'running' });
      return { id, status: opts?.start ? 'running' : 'created', pid: 10 };
    },
    updateContainer: async (req: { id: string; labels: Record<string, string> }) => {
      if (fail.update) throw new BerthError(Code.UNAVAILABLE, 'task-service is unavailable');
      const r = records.get(req.id) as ContainerInfo;
      const container = { ...r.container, labels: { ...r.container.labels, ...req.labels } };
      records.set(req.id, { ...r, container });
      return container;
    },
    deleteContainer: async (id: string) => {
      if (fail.delete) throw new BerthError(Code.UNAVAILABLE, 'task-service is unavailable');
      if (!records.delete(id)) throw new BerthError(Code.NOT_FOUND, `container ${id} not found`);
    },
    start: async (id: string) => {
      const r = records.get(id) as ContainerInfo;
      records.set(id, { ...r, status: 'running' });
      return { id, status: 'running', pid: 10 };
    },
    // Read now, answered once released: a reply that arrives late (a paused task-service).
    listContainers: async () => {
      const now = [...records.values()];
      steps.listed.open();
      await holds.listReply.opened;
      return now;
    },
  } as unknown as TaskPort;
  const pods = new PodRuntime({
    tasks,
    network,
    sandboxImage: { ensure: async () => ({ name: 'pause:1' }) } as unknown as SandboxImage,
    containersDir: '/nonexistent',
    log: { warn: () => undefined, info: () => undefined } as unknown as Logger,
    ...(events === 'none' ? {} : { events: feed }),
  });
  return { pods, keys, torn, steps, holds, fail, ownIds, records, labelsAtStart };
}

/** The id of the first pod the fakes' task-service made. */
const firstId = (f: ReturnType<typeof fakes>): string => [...f.records.keys()][0] ?? '';

const config = {
  metadata: { name: 'web', uid: 'u1', namespace: 'default', attempt: 0 },
  linux: { security_context: { namespace_options: { network: 'POD', pid: 'CONTAINER', ipc: 'POD' } } },
};

describe('PodRuntime.collectNetworks', () => {
  it('never tears down the network of a pod whose RunPodSandbox finished while the pods were read', async () => {
    const f = fakes();
    const run = f.pods.run(config, '');
    // The network is set up before the pause's record is made (the gateway chose its id).
    await f.steps.setUp.opened;
    const collect = f.pods.collectNetworks();
    await f.steps.listed.opened; // the pods were read without it; the answer is on its way
    f.holds.create.open();
    const id = await run; // RunPodSandbox answered OK: the pod runs
    f.holds.listReply.open();
    expect(await collect).toEqual([]);
    expect(f.torn).toEqual([]);
    expect(f.keys.size).toBe(1);
    // The next collection reads the pod and keeps its network; an orphan beside it goes.
    f.keys.add('cri-orphan');
    expect(await f.pods.collectNetworks()).toEqual(['cri-orphan']);
    expect([...f.records.keys()]).toEqual([id]);
  });

  it('removes a pod whose RunPodSandbox failed and could not be undone', async () => {
    const f = fakes();
    f.holds.create.open();
    f.holds.listReply.open();
    // The pause runs, then recording its addresses fails, and so does the undo's removal of the
    // pod (its network teardown goes through): RunPodSandbox answered an error, yet the pod is
    // listed, running, with no network.
    f.fail.update = true;
    f.fail.delete = true;
    await expect(f.pods.run(config, '')).rejects.toThrow(/unavailable/);
    expect(f.records.size).toBe(1);
    expect(f.keys.size).toBe(0);
    // While the task-service is still down the pod stays, for the next pass.
    expect(await f.pods.collectNetworks()).toEqual([]);
    expect(f.records.size).toBe(1);
    f.fail.delete = false;
    expect(await f.pods.collectNetworks()).toEqual([]);
    expect(f.records.size).toBe(0);
  });

  it('keeps a finished pod and the pod of a RunPodSandbox still setting up', async () => {
    const f = fakes();
    f.holds.listReply.open();
    f.holds.create.open();
    const done = await f.pods.run(config, '');
    // A second pod stays in its setup: its container is made, its network is up, no addresses yet.
    const gateUpdate = gate();
    const tasks = (
      f.pods as unknown as { d: { tasks: { updateContainer: (r: unknown) => Promise<unknown> } } }
    ).d.tasks;
    const update = tasks.updateContainer;
    tasks.updateContainer = async (r) => {
      await gateUpdate.opened;
      return update(r);
    };
    const second = f.pods.run({ ...config, metadata: { ...config.metadata, name: 'db', uid: 'u2' } }, '');
    await until(() => f.records.size === 2);
    expect(await f.pods.collectNetworks()).toEqual([]);
    expect(f.records.size).toBe(2);
    gateUpdate.open();
    await second;
    expect(await f.pods.collectNetworks()).toEqual([]);
    expect(f.records.has(done)).toBe(true);
    expect(f.torn).toEqual([]);
  });
});

describe('PodRuntime.run with a task-service that picks its own ids', () => {
  it('fails FAILED_PRECONDITION and leaves no pod: its plugins were told another id', async () => {
    const f = fakes();
    f.holds.create.open();
    f.holds.listReply.open();
    f.ownIds.on = true;
    await expect(f.pods.run(config, '')).rejects.toMatchObject({
      code: 'FAILED_PRECONDITION',
      message: expect.stringMatching(/under its own id, not the gateway's .*upgrade every task-service/),
    });
    expect(f.records.size).toBe(0);
    expect(f.keys.size).toBe(0);
  });
});

describe("PodRuntime.run records the pod's addresses", () => {
  const ipsOf = (labels: Record<string, string> | undefined) =>
    labels?.['io.berth.cri.meta']
      ? (JSON.parse(labels['io.berth.cri.meta']) as { ips?: string[] }).ips
      : undefined;

  it('while the pause starts when its tasks.create event arrives', async () => {
    const f = fakes('delivered');
    f.holds.create.open();
    f.holds.start = gate(); // the start is held after the task is recorded and its event sent
    const run = f.pods.run(config, '');
    await until(() => ipsOf(f.records.get(firstId(f))?.container.labels) !== undefined);
    expect(f.labelsAtStart.has(firstId(f))).toBe(false); // recorded before the start returned
    f.holds.start.open();
    const id = await run;
    expect(ipsOf(f.records.get(id)?.container.labels)).toEqual(['10.0.0.2']);
  });

  for (const events of ['lost', 'none'] as const) {
    it(`after the pause's start when its tasks.create event is ${events === 'lost' ? 'lost' : 'not followed'}`, async () => {
      const f = fakes(events);
      f.holds.create.open();
      f.holds.start = gate();
      const run = f.pods.run(config, '');
      await until(() => f.records.size === 1);
      // Without the event nothing says the task is recorded: no update races the task-service.
      for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
      expect(ipsOf(f.records.get(firstId(f))?.container.labels)).toBeUndefined();
      f.holds.start.open();
      const id = await run;
      // The call's own reply is the fallback: RunPodSandbox answered with the addresses recorded.
      expect(ipsOf(f.labelsAtStart.get(id))).toBeUndefined();
      expect(ipsOf(f.records.get(id)?.container.labels)).toEqual(['10.0.0.2']);
    });
  }
});

/** Waits for a condition the fakes reach within a few turns of the event loop. */
async function until(ok: () => boolean): Promise<void> {
  for (let i = 0; i < 100 && !ok(); i++) await new Promise((r) => setImmediate(r));
  if (!ok()) throw new Error('condition not reached');
}
