import { type ContainerInfo, type ShimStats, toBerthError } from '@berth/api';
import type { SnapshotPort } from '../images/ports.js';
import type { ContainerRuntime } from './containers.js';
import { type ContainerMeta, CriKind, CriLabel, isoToNs, metaOf, type SandboxMeta } from './meta.js';
import type { PodRuntime } from './pods.js';
import type { TaskPort } from './ports.js';
import { stringMap } from './validate.js';

/** What the stats RPCs need: task stats, and the snapshot-service for writable layers. */
export interface StatsDeps {
  tasks: TaskPort;
  snapshots: SnapshotPort;
  /** The image filesystem (snapshots directory): where writable layers live. */
  snapshotsDir: string;
}

/** CRI ListContainerStats / ListPodSandboxStats filters, as on the wire. */
export interface StatsFilter {
  id?: string;
  pod_sandbox_id?: string;
  label_selector?: Record<string, string>;
}

const u64 = (n: number | bigint | undefined) => (n === undefined ? null : { value: String(n) });

/**
 * CRI container and pod statistics from the task-service's cgroup stats. CPU cores in use
 * (usage_nano_cores) is a rate: it comes from the previous sample of the same container, so the
 * first sample of a container has none, as in containerd.
 */
export class StatsRuntime {
  private readonly last = new Map<string, { ns: bigint; usage: bigint }>();

  constructor(
    private readonly d: StatsDeps,
    private readonly pods: PodRuntime,
    private readonly containers: ContainerRuntime,
  ) {}

  /** ContainerStats: a running container's cpu, memory and writable layer; only attributes otherwise. */
  async container(id: string) {
    return this.statsOf(await this.containers.get(id));
  }

  /** ListContainerStats: the running containers matching the filter. */
  async listContainers(filter: StatsFilter | null | undefined) {
    const infos = await this.d.tasks.listContainers({ [CriLabel.kind]: CriKind.container });
    const selector = stringMap(filter?.label_selector, 'filter.label_selector');
    // Forget the previous samples of containers that are gone.
    const ids = new Set(infos.map((i) => i.container.id));
    for (const k of this.last.keys()) if (!ids.has(k)) this.last.delete(k);
    const chosen = infos.filter((i) => {
      if (i.status !== 'running') return false;
      if (filter?.id && !i.container.id.startsWith(filter.id)) return false;
      const pod = i.container.labels[CriLabel.sandboxId] ?? '';
      if (filter?.pod_sandbox_id && !pod.startsWith(filter.pod_sandbox_id)) return false;
      const labels = metaOf<ContainerMeta>(i.container).labels;
      return Object.entries(selector).every(([k, v]) => labels[k] === v);
    });
    return Promise.all(chosen.map((i) => this.statsOf(i)));
  }

  /** PodSandboxStats: the pod's containers, summed with its pause process into pod totals. */
  async pod(id: string) {
    const sb = await this.pods.get(id);
    return this.podStatsOf(sb.info);
  }

  /** ListPodSandboxStats: the ready pods matching the filter. */
  async listPods(filter: StatsFilter | null | undefined) {
    const all = await this.d.tasks.listContainers({ [CriLabel.kind]: CriKind.sandbox });
    const selector = stringMap(filter?.label_selector, 'filter.label_selector');
    const chosen = all.filter((i) => {
      if (i.status !== 'running') return false;
      if (filter?.id && !i.container.id.startsWith(filter.id)) return false;
      const labels = metaOf<SandboxMeta>(i.container).labels;
      return Object.entries(selector).every(([k, v]) => labels[k] === v);
    });
    return Promise.all(chosen.map((i) => this.podStatsOf(i)));
  }

  private async podStatsOf(pause: ContainerInfo) {
    const m = metaOf<SandboxMeta>(pause.container);
    const infos = (await this.pods.containersOf(pause.container.id)).filter((i) => i.status === 'running');
    const containers = await Promise.all(infos.map((i) => this.statsOf(i)));
    const samples = [
      await this.sample(pause),
      ...(await Promise.all(infos.map((i) => this.sample(i)))),
    ].filter((s): s is ShimStats => s !== undefined);
    const ts = isoToNs(new Date().toISOString());
    const sum = (f: (s: ShimStats) => number) => samples.reduce((a, s) => a + f(s), 0);
    const running = pause.status === 'running' && samples.length > 0;
    return {
      attributes: {
        id: pause.container.id,
        metadata: m.metadata,
        labels: m.labels,
        annotations: m.annotations,
      },
      linux: {
        cpu: running
          ? { timestamp: ts, usage_core_nano_seconds: u64(sum((s) => s.cpu.usageNs)), usage_nano_cores: null }
          : null,
        memory: running
          ? {
              timestamp: ts,
              working_set_bytes: u64(sum((s) => s.memory.workingSetBytes)),
              usage_bytes: u64(sum((s) => s.memory.usageBytes)),
              rss_bytes: u64(sum((s) => s.memory.rssBytes)),
              available_bytes: null,
              page_faults: null,
              major_page_faults: null,
            }
          : null,
        network: null,
        process: running ? { timestamp: ts, process_count: u64(sum((s) => s.pids.current)) } : null,
        containers,
      },
    };
  }

  /** The task's cgroup stats, or undefined when it stopped meanwhile. */
  private async sample(info: ContainerInfo): Promise<ShimStats | undefined> {
    if (info.status !== 'running') return undefined;
    try {
      return (await this.d.tasks.stats(info.container.id)) as unknown as ShimStats;
    } catch (err) {
      const code = toBerthError(err).code;
      if (code === 'FAILED_PRECONDITION' || code === 'NOT_FOUND') return undefined;
      throw err;
    }
  }

  private async statsOf(info: ContainerInfo) {
    const m = metaOf<ContainerMeta>(info.container);
    const attributes = {
      id: info.container.id,
      metadata: m.metadata,
      labels: m.labels,
      annotations: m.annotations,
    };
    const s = await this.sample(info);
    if (!s) return { attributes, cpu: null, memory: null, writable_layer: null };
    const ts = isoToNs(s.timestamp);
    const usage = BigInt(Math.round(s.cpu.usageNs));
    const prev = this.last.get(info.container.id);
    this.last.set(info.container.id, { ns: BigInt(ts), usage });
    const rate =
      prev && BigInt(ts) > prev.ns && usage >= prev.usage
        ? ((usage - prev.usage) * 1_000_000_000n) / (BigInt(ts) - prev.ns)
        : undefined;
    const layer = await this.d.snapshots.usage(info.container.snapshotKey).catch(() => undefined);
    return {
      attributes,
      cpu: { timestamp: ts, usage_core_nano_seconds: u64(usage), usage_nano_cores: u64(rate) },
      memory: {
        timestamp: ts,
        working_set_bytes: u64(s.memory.workingSetBytes),
        usage_bytes: u64(s.memory.usageBytes),
        rss_bytes: u64(s.memory.rssBytes),
        available_bytes:
          s.memory.limitBytes !== undefined
            ? u64(Math.max(0, s.memory.limitBytes - s.memory.workingSetBytes))
            : null,
        page_faults: null,
        major_page_faults: null,
      },
      writable_layer: layer
        ? {
            timestamp: ts,
            fs_id: { mountpoint: this.d.snapshotsDir },
            used_bytes: u64(layer.size),
            inodes_used: u64(layer.inodes),
          }
        : null,
    };
  }
}
