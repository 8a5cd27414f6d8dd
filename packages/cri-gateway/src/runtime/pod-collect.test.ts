import type { ContainerInfo, CreateContainerRequest } from '@berth/api';
import type { Logger } from '@berth/kit';
import { describe, expect, it } from 'vitest';
import type { SandboxImage } from './pause-image.js';
import { PodRuntime } from './pods.js';
import type { PodNetwork, TaskPort } from './ports.js';

// The collection of pod networks no pod owns, against a task-service and a network held in
// memory whose answers the test releases by hand: the interleavings a slow or paused service
// makes, played in a fixed order.

/** A promise and the function that resolves it. */
function gate() {
  let open!: () => void;
  const opened = new Promise<void>((r) => {
    open = r;
  });
  return { open, opened };
}

function fakes() {
  const records = new Map<string, ContainerInfo>();
  const keys = new Set<string>();
  const torn: string[] = [];
  const steps = { setUp: gate(), listed: gate() };
  const holds = { create: gate(), listReply: gate() };
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
      const id = `pod${records.size}`;
      const container = { id, node: 'n1', labels: req.labels ?? {} } as ContainerInfo['container'];
      records.set(id, { container, status: 'created' } as ContainerInfo);
      return container;
    },
    createTask: async (id: string, opts?: { start?: boolean; netnsPod?: string }) => {
      // The shim pins the pod's namespace at the pause's task create when setup has not yet.
      if (opts?.netnsPod) keys.add(opts.netnsPod);
      const r = records.get(id) as ContainerInfo;
      if (opts?.start) records.set(id, { ...r, status: 'running' });
      return { id, status: opts?.start ? 'running' : 'created', pid: 10 };
    },
    updateContainer: async (req: { id: string; labels: Record<string, string> }) => {
      const r = records.get(req.id) as ContainerInfo;
      const container = { ...r.container, labels: { ...r.container.labels, ...req.labels } };
      records.set(req.id, { ...r, container });
      return container;
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
    log: { warn: () => undefined } as unknown as Logger,
  });
  return { pods, keys, torn, steps, holds };
}

const config = {
  metadata: { name: 'web', uid: 'u1', namespace: 'default', attempt: 0 },
  linux: { security_context: { namespace_options: { network: 'POD', pid: 'CONTAINER', ipc: 'POD' } } },
};

describe('PodRuntime.collectNetworks', () => {
  it('never tears down the network of a pod whose RunPodSandbox finished while the pods were read', async () => {
    const f = fakes();
    const run = f.pods.run(config, '');
    await f.steps.setUp.opened; // the network is set up; the pause container is not made yet
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
    expect(id).toBe('pod0');
  });
});
