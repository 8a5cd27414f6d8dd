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

/** The sum of a counter over samples, undefined when one of them lacks it (an optional one a shim of before has not). */
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

/** How long a sample is kept for the next one's rate without being renewed (10 min). */
const SAMPLE_TTL_NS = 600n * 1_000_000_000n;

/** The interface a pod's CNI network adds (the CNI_IFNAME berth passes, as the kubelet expects). */
const POD_INTERFACE = 'eth0';

/**
 * CRI container and pod statistics from the task-service's cgroup stats. CPU cores in use
 * (usage_nano_cores) is a rate: it comes from the previous sample of the same container (a pod's:
 * of its pause and containers), so the first sample has none, as in containerd. A pod with a
 * network of its own reports its eth0's counters, read in its network namespace.
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
    this.prune();
    return (await this.measure(await this.containers.get(id))).stats;
  }

  /** ListContainerStats: the running containers matching the filter. */
  async listContainers(filter: StatsFilter | null | undefined) {
    const infos = await this.d.tasks.listContainers({ [CriLabel.kind]: CriKind.container });
    const selector = stringMap(filter?.label_selector, 'filter.label_selector');
    this.prune();
    const chosen = infos.filter((i) => {
      if (i.status !== 'running') return false;
      if (filter?.id && !i.container.id.startsWith(filter.id)) return false;
      const pod = i.container.labels[CriLabel.sandboxId] ?? '';
      if (filter?.pod_sandbox_id && !pod.startsWith(filter.pod_sandbox_id)) return false;
      const labels = metaOf<ContainerMeta>(i.container).labels;
      return Object.entries(selector).every(([k, v]) => labels[k] === v);
    });
    return Promise.all(chosen.map(async (i) => (await this.measure(i)).stats));
  }

  /** PodSandboxStats: the pod's containers, summed with its pause process into pod totals. */
  async pod(id: string) {
    const sb = await this.pods.get(id);
    this.prune();
    return this.podStatsOf(sb.info);
  }

  /** ListPodSandboxStats: the ready pods matching the filter. */
  async listPods(filter: StatsFilter | null | undefined) {
    const all = await this.d.tasks.listContainers({ [CriLabel.kind]: CriKind.sandbox });
    this.prune();
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
    const [pauseSample, measured] = await Promise.all([
      this.sample(pause),
      Promise.all(infos.map((i) => this.measure(i))),
    ]);
    const samples = [pauseSample, ...measured.map((x) => x.sample)].filter(
      (s): s is ShimStats => s !== undefined,
    );
    const ts = isoToNs(new Date().toISOString());
    const running = pause.status === 'running' && pauseSample !== undefined;
    const usage = BigInt(Math.round(sumOf(samples, (s) => s.cpu.usageNs) ?? 0));
    // The sum of each member's own rate, not the rate of the sum: the sum drops when a container
    // exits and a restarted one counts from zero, where each member's counter only grows. A
    // container on its first sample adds nothing yet.
    const pauseRate = pauseSample
      ? this.rate(`${POD_KEY}${pause.container.id}`, isoToNs(pauseSample.timestamp), pauseSample.cpu.usageNs)
      : undefined;
    const rate =
      pauseRate === undefined ? undefined : measured.reduce((a, x) => a + (x.rate ?? 0n), pauseRate);
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
              working_set_bytes: u64(sumOf(samples, (s) => s.memory.workingSetBytes)),
              usage_bytes: u64(sumOf(samples, (s) => s.memory.usageBytes)),
              rss_bytes: u64(sumOf(samples, (s) => s.memory.rssBytes)),
              available_bytes: null,
              page_faults: u64(sumOf(samples, (s) => s.memory.pageFaults)),
              major_page_faults: u64(sumOf(samples, (s) => s.memory.majorPageFaults)),
            }
          : null,
        network,
        process: running
          ? { timestamp: ts, process_count: u64(sumOf(samples, (s) => s.pids.current)) }
          : null,
        containers: measured.map((x) => x.stats),
      },
    };
  }

  /**
   * CPU cores in use since the previous sample of `key` (ns of CPU per ns), undefined on a first
   * one or when the counter went back (a new process under the same id).
   */
  private rate(key: string, ts: string, usageNs: number): bigint | undefined {
    const usage = BigInt(Math.round(usageNs));
    const prev = this.last.get(key);
    this.last.set(key, { ns: BigInt(ts), usage });
    return prev && BigInt(ts) > prev.ns && usage >= prev.usage
      ? ((usage - prev.usage) * 1_000_000_000n) / (BigInt(ts) - prev.ns)
      : undefined;
  }

  /**
   * Forgets samples not renewed for SAMPLE_TTL_NS: those of containers and pods that are gone
   * (whichever stats calls a caller makes; the kubelet samples every few seconds).
   */
  private prune(): void {
    const oldest = BigInt(Date.now()) * 1_000_000n - SAMPLE_TTL_NS;
    for (const [k, v] of this.last) if (v.ns < oldest) this.last.delete(k);
  }

  /**
   * A pod's network usage, as containerd reports it: its own namespace's eth0 (none in the node's
   * network). Read through the pause process, once it is known to be in the pod's pinned
   * namespace (a pause gone and its pid taken by a process of the node would give the node's).
   */
  private async network(pause: ContainerInfo, m: SandboxMeta, ts: string) {
    const pid = pause.task?.pid;
    if (!m.netKey || !m.netnsPath || !pid) return null;
    const counters = await netnsCounters(pid, m.netnsPath);
    const eth0 = counters?.find((i) => i.name === POD_INTERFACE);
    if (!eth0) return null;
    return {
      timestamp: ts,
      default_interface: {
        name: eth0.name,
        rx_bytes: u64(eth0.rxBytes),
        rx_errors: u64(eth0.rxErrors),
        tx_bytes: u64(eth0.txBytes),
        tx_errors: u64(eth0.txErrors),
      },
      interfaces: [],
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

  /** A container's CRI stats, with the sample they came from and its CPU rate (none on a first sample). */
  private async measure(info: ContainerInfo) {
    const m = metaOf<ContainerMeta>(info.container);
    const attributes = {
      id: info.container.id,
      metadata: m.metadata,
      labels: m.labels,
      annotations: m.annotations,
    };
    const s = await this.sample(info);
    if (!s) return { stats: { attributes, cpu: null, memory: null, writable_layer: null } };
    const ts = isoToNs(s.timestamp);
    const usage = BigInt(Math.round(s.cpu.usageNs));
    const rate = this.rate(info.container.id, ts, s.cpu.usageNs);
    const layer = await this.d.snapshots.usage(info.container.snapshotKey).catch(() => undefined);
    const stats = {
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
            // When the snapshot-service's walk behind the figure started (it refreshes its cache
            // every usageRefreshMs), as containerd's CRI stamps it with its snapshot store's time.
            timestamp: layer.measuredAt ? isoToNs(layer.measuredAt) : ts,
            fs_id: { mountpoint: this.d.snapshotsDir },
            used_bytes: u64(layer.size),
            inodes_used: u64(layer.inodes),
          }
        : null,
    };
    return { stats, sample: s, rate };
  }
}
