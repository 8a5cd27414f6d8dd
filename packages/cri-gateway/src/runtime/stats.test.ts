import type { ContainerInfo, ShimStats } from '@berth/api';
import { describe, expect, it } from 'vitest';
import type { ContainerRuntime } from './containers.js';
import { CriLabel } from './meta.js';
import type { PodRuntime } from './pods.js';
import { type StatsDeps, StatsRuntime } from './stats.js';

// StatsRuntime over a task-service and pod view held in memory: the pod's CPU rate and sums.

const info = (id: string, kind: 'sandbox' | 'container'): ContainerInfo =>
  ({
    status: 'running',
    task: { pid: 4242 },
    container: {
      id,
      snapshotKey: id,
      labels: {
        [CriLabel.kind]: kind,
        [CriLabel.meta]: JSON.stringify({ metadata: { name: id }, labels: {}, annotations: {} }),
      },
    },
  }) as unknown as ContainerInfo;

function world() {
  // Near the real clock: samples older than 10 min are forgotten.
  let now = Date.now(); // ms
  const cpu = new Map<string, number>(); // ns of CPU per task
  const faults = new Map<string, number | undefined>();
  const members = new Set<string>();
  const sample = (id: string): ShimStats =>
    ({
      timestamp: new Date(now).toISOString(),
      cpu: { usageNs: cpu.get(id) ?? 0 },
      memory: { usageBytes: 1, workingSetBytes: 1, rssBytes: 1, pageFaults: faults.get(id) },
      pids: { current: 1 },
    }) as unknown as ShimStats;
  const d = {
    tasks: { stats: async (id: string) => sample(id) },
    snapshots: { usage: async () => undefined },
    snapshotsDir: '/x',
  } as unknown as StatsDeps;
  const pods = {
    get: async (id: string) => ({ info: info(id, 'sandbox') }),
    containersOf: async () => [...members].map((id) => info(id, 'container')),
  } as unknown as PodRuntime;
  const stats = new StatsRuntime(d, pods, {} as ContainerRuntime);
  type Pod = {
    linux: { cpu: { usage_nano_cores: { value: string } | null }; memory: Record<string, unknown> };
  };
  const podStats = async () => (await stats.pod('pod')) as unknown as Pod;
  const tick = (ms: number) => {
    now += ms;
  };
  return { cpu, faults, members, podStats, tick };
}

describe('StatsRuntime pod totals', () => {
  it("takes a pod's rate as the sum of its members' rates: a container that exits or restarts makes no jump", async () => {
    const w = world();
    w.members.add('a').add('b');
    w.cpu.set('pod', 1e9).set('a', 5e9).set('b', 7e9);
    expect((await w.podStats()).linux.cpu.usage_nano_cores).toBeNull();
    // One second: the pause used 0.1 s, a 0.5 s, b 0.2 s of CPU.
    w.tick(1000);
    w.cpu.set('pod', 1.1e9).set('a', 5.5e9).set('b', 7.2e9);
    expect((await w.podStats()).linux.cpu.usage_nano_cores).toEqual({ value: '800000000' });
    // b exits (its 7.2 s leave the sum) and a new c comes with 9 s of past CPU: the rate is what
    // the pause and a used, c counting from its own next sample.
    w.members.delete('b');
    w.members.add('c');
    w.cpu.set('c', 9e9);
    w.tick(1000);
    w.cpu.set('pod', 1.2e9).set('a', 5.8e9);
    expect((await w.podStats()).linux.cpu.usage_nano_cores).toEqual({ value: '400000000' });
    w.tick(1000);
    w.cpu.set('c', 9.5e9);
    expect((await w.podStats()).linux.cpu.usage_nano_cores).toEqual({ value: '500000000' });
  });

  it('sums page faults only when every member reports them (a shim of before reports none)', async () => {
    const w = world();
    w.members.add('a');
    w.faults.set('pod', 3).set('a', 4);
    expect((await w.podStats()).linux.memory.page_faults).toEqual({ value: '7' });
    w.faults.set('a', undefined);
    expect((await w.podStats()).linux.memory.page_faults).toBeNull();
  });
});
