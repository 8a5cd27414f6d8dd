import { type ContainerInfo, type ShimStats, toBerthError } from '@berth/api';
import type { SnapshotPort } from '../images/ports.js';
import type { ContainerRuntime } from './containers.js';
import { type ContainerMeta, CriKind, CriLabel, isoToNs, metaOf, type SandboxMeta } from './meta.js';
import { netnsCounters } from './net-dev.js';
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

/** The sum of a counter over samples, undefined when one of them lacks it (a shim of before). */
function sumOf(samples: ShimStats[], f: (s: ShimStats) => number | undefined): number | undefined {
  let total = 0;
  for (const s of samples) {
    const v = f(s);
    if (v === undefined) return undefined;
    total += v;
  }
  return total;
}

/** Where a pod's previous CPU sample is kept beside its containers' (a pod's id is its pause's). */
const POD_KEY = 'pod:';

/** The interface a pod's CNI network adds (the CNI_IFNAME berth passes, as the kubelet expects). */
const POD_INTERFACE = 'eth0';

/**
 * CRI container and pod statistics from the task-service's cgroup stats. CPU cores in use
 * (usage_nano_cores) is a rate: it comes from the previous sample of the same container (or pod),
 * so the first sample has none, as in containerd. A pod with a network of its own reports its
 * interfaces' counters, read in its pause process's network namespace.
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
    for (const k of this.last.keys()) if (!k.startsWith(POD_KEY) && !ids.has(k)) this.last.delete(k);
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
    const ids = new Set(all.map((i) => `${POD_KEY}${i.container.id}`));
    for (const k of this.last.keys()) if (k.startsWith(POD_KEY) && !ids.has(k)) this.last.delete(k);
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
    const usage = BigInt(Math.round(sum((s) => s.cpu.usageNs)));
    const rate = running ? this.rate(`${POD_KEY}${pause.container.id}`, ts, usage) : undefined;
    const network = running ? await this.network(pause, m, ts) : null;
    return {
      attributes: {
        id: pause.container.id,
        metadata: m.metadata,
        labels: m.labels,
        annotations: m.annotations,
      },
      linux: {
        cpu: running
          ? { timestamp: ts, usage_core_nano_seconds: u64(usage), usage_nano_cores: u64(rate) }
          : null,
        memory: running
          ? {
              timestamp: ts,
              working_set_bytes: u64(sum((s) => s.memory.workingSetBytes)),
              usage_bytes: u64(sum((s) => s.memory.usageBytes)),
              rss_bytes: u64(sum((s) => s.memory.rssBytes)),
              available_bytes: null,
              page_faults: u64(sumOf(samples, (s) => s.memory.pageFaults)),
              major_page_faults: u64(sumOf(samples, (s) => s.memory.majorPageFaults)),
            }
          : null,
        network,
        process: running ? { timestamp: ts, process_count: u64(sum((s) => s.pids.current)) } : null,
        containers,
      },
    };
  }

  /** CPU cores in use since the previous sample of `key` (ns of CPU per ns), undefined on a first one. */
  private rate(key: string, ts: string, usage: bigint): bigint | undefined {
    const prev = this.last.get(key);
    this.last.set(key, { ns: BigInt(ts), usage });
    return prev && BigInt(ts) > prev.ns && usage >= prev.usage
      ? ((usage - prev.usage) * 1_000_000_000n) / (BigInt(ts) - prev.ns)
      : undefined;
  }

  /** A pod's network usage: its own namespace's interfaces (none in the node's network). */
  private async network(pause: ContainerInfo, m: SandboxMeta, ts: string) {
    const pid = pause.task?.pid;
    if (!m.netKey || !pid) return null;
    const counters = await netnsCounters(pid);
    if (!counters?.length) return null;
    const usage = counters.map((i) => ({
      name: i.name,
      rx_bytes: u64(i.rxBytes),
      rx_errors: u64(i.rxErrors),
      tx_bytes: u64(i.txBytes),
      tx_errors: u64(i.txErrors),
    }));
    const main = usage.find((i) => i.name === POD_INTERFACE) ?? usage[0];
    return { timestamp: ts, default_interface: main, interfaces: usage.filter((i) => i !== main) };
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
    const rate = this.rate(info.container.id, ts, usage);
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
        page_faults: u64(s.memory.pageFaults),
        major_page_faults: u64(s.memory.majorPageFaults),
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
