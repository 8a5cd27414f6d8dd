import { type InfoReply, isHostLocal, type Service, serviceDefs } from '@berth/api';
import { call } from '@berth/kit/client';
import { type NatsConnection, RequestStrategy, type ServiceInfo, type ServiceStats } from 'nats';
import { STACK_SERVICES } from './plan.js';

/** One running replica as NATS service discovery sees it. */
export interface InstanceStatus {
  service: Service;
  node: string;
  /** berth's instance id (the kit's `instance` metadata, also in the `info` reply). */
  instance: string;
  pid: number;
  version: string;
  uptimeSeconds: number | null;
  /** healthy / unhealthy from the service's own checks (Redis reachable, ...). */
  health: 'healthy' | 'unhealthy';
  /** Checks that are not "ok", when this replica answered `info` itself. */
  problems: Record<string, string>;
  /** Where the replica serves Prometheus metrics (its `metrics` metadata), or null when off. */
  metrics: string | null;
}

/** One service: the replicas found, and how many this node should run. */
export interface ServiceStatus {
  service: Service;
  /** Replicas expected on this node (0 when nothing is expected, e.g. without a supervisor). */
  expected: number;
  /** Replicas found on this node. */
  found: number;
  instances: InstanceStatus[];
}

/** The whole picture `berth status` prints. */
export interface StackStatus {
  nodeId: string;
  services: ServiceStatus[];
  /** One line per expected service that is missing replicas on this node. */
  missing: string[];
  /** Replicas that answered discovery but report a failing check. */
  unhealthy: string[];
  ok: boolean;
}

const discoveryOpts = { strategy: RequestStrategy.JitterTimer, maxWait: 2000, jitter: 250 };

/**
 * Every reply of one discovery request, until the replies stop coming (the jitter timer), or until
 * `enough` says the caller has what it needs.
 */
async function gather<T>(it: Promise<AsyncIterable<T>>, enough?: (items: T[]) => boolean): Promise<T[]> {
  const out: T[] = [];
  try {
    for await (const v of await it) {
      out.push(v);
      if (enough?.(out)) break;
    }
  } catch {
    // No responders at all ends the iterator with an error: that is an empty answer.
  }
  return out;
}

function isStackService(name: string): name is Service {
  return (STACK_SERVICES as readonly string[]).includes(name);
}

/**
 * Asks one (service, node) group for `info` several times: replicas share a queue group, so each
 * request reaches one of them; the replies say which replica answered and how its checks went.
 */
async function sampleInfo(
  nc: NatsConnection,
  service: Service,
  node: string | undefined,
  replicas: number,
): Promise<InfoReply[]> {
  const tries = Math.max(3, replicas * 4);
  const calls = Array.from({ length: tries }, () =>
    call(nc, serviceDefs[service], 'info', {}, { timeoutMs: 2000, ...(node ? { node } : {}) }).catch(
      () => undefined,
    ),
  );
  return (await Promise.all(calls)).filter((r): r is InfoReply => r !== undefined);
}

/**
 * Collects the status of every berth service on this NATS: replicas from `$SRV.INFO`, their start
 * time from `$SRV.STATS`, health from each service's `info` operation. `expected` says how many
 * replicas of each service this node should run; fewer makes a `missing` line and `ok` false.
 */
export async function collectStatus(
  nc: NatsConnection,
  opts: {
    nodeId: string;
    expected: Partial<Record<Service, number>>;
    /**
     * Stop listening for discovery replies once every expected replica of this node has answered,
     * instead of waiting for the replies to stop (250 ms after the last): `berth up`'s readiness
     * rounds, which look at this node only. Replicas of other nodes answering later are left out.
     */
    untilExpected?: boolean;
  },
): Promise<StackStatus> {
  const client = nc.services.client(discoveryOpts);
  const enough = opts.untilExpected
    ? (items: { name: string; metadata?: Record<string, string> }[]) =>
        Object.entries(opts.expected).every(
          ([service, n]) =>
            items.filter((i) => i.name === service && i.metadata?.node === opts.nodeId).length >= (n ?? 0),
        )
    : undefined;
  const [infos, stats] = await Promise.all([
    gather<ServiceInfo>(client.info(), enough),
    gather<ServiceStats>(client.stats(), enough),
  ]);
  const startedById = new Map(stats.map((s) => [s.id, s.started]));
  const instances: InstanceStatus[] = [];
  for (const i of infos) {
    if (!isStackService(i.name)) continue;
    const started = startedById.get(i.id);
    instances.push({
      service: i.name,
      node: i.metadata?.node ?? '?',
      instance: i.metadata?.instance ?? i.id,
      pid: Number(i.metadata?.pid ?? 0),
      version: i.version,
      uptimeSeconds: started ? Math.max(0, (Date.now() - Date.parse(started)) / 1000) : null,
      health: 'healthy',
      problems: {},
      metrics: i.metadata?.metrics ?? null,
    });
  }

  // Health: sample `info` per group; a replica that did not get a sample inherits its group's.
  const groups = new Map<string, InstanceStatus[]>();
  for (const inst of instances) {
    const key = isHostLocal(inst.service) ? `${inst.service}@${inst.node}` : inst.service;
    groups.set(key, [...(groups.get(key) ?? []), inst]);
  }
  await Promise.all(
    [...groups.values()].map(async (members) => {
      const first = members[0] as InstanceStatus;
      const node = isHostLocal(first.service) ? first.node : undefined;
      const replies = await sampleInfo(nc, first.service, node, members.length);
      const byInstance = new Map(replies.map((r) => [r.instanceId, r]));
      const groupHealthy = replies.length > 0 && replies.every((r) => r.healthy);
      for (const m of members) {
        const own = byInstance.get(m.instance);
        const healthy = own ? own.healthy : groupHealthy;
        m.health = healthy ? 'healthy' : 'unhealthy';
        if (own) m.problems = Object.fromEntries(Object.entries(own.checks).filter(([, v]) => v !== 'ok'));
        else if (replies.length === 0) m.problems = { info: 'did not answer' };
      }
    }),
  );

  const services: ServiceStatus[] = [];
  const missing: string[] = [];
  for (const service of STACK_SERVICES) {
    const mine = instances.filter((i) => i.service === service);
    const found = mine.filter((i) => i.node === opts.nodeId).length;
    const expected = opts.expected[service] ?? 0;
    if (found < expected) {
      missing.push(
        found === 0
          ? `${service} is not running on node ${opts.nodeId}`
          : `${service} has ${found} of ${expected} replicas running on node ${opts.nodeId}`,
      );
    }
    mine.sort((a, b) => a.node.localeCompare(b.node) || a.pid - b.pid);
    services.push({ service, expected, found, instances: mine });
  }
  const unhealthy = instances
    .filter((i) => i.health !== 'healthy')
    .map((i) => `${i.service} pid ${i.pid} on ${i.node} is unhealthy: ${formatProblems(i.problems)}`);
  return {
    nodeId: opts.nodeId,
    services,
    missing,
    unhealthy,
    ok: missing.length === 0 && unhealthy.length === 0,
  };
}

function formatProblems(p: Record<string, string>): string {
  const parts = Object.entries(p).map(([k, v]) => `${k}: ${v}`);
  return parts.length ? parts.join('; ') : 'no details';
}

/** Formats seconds as the largest two units, e.g. 2h05m, 3m07s, 12s. */
export function formatUptime(s: number | null): string {
  if (s === null) return '-';
  const t = Math.floor(s);
  if (t < 60) return `${t}s`;
  if (t < 3600) return `${Math.floor(t / 60)}m${String(t % 60).padStart(2, '0')}s`;
  if (t < 86400) return `${Math.floor(t / 3600)}h${String(Math.floor((t % 3600) / 60)).padStart(2, '0')}m`;
  return `${Math.floor(t / 86400)}d${String(Math.floor((t % 86400) / 3600)).padStart(2, '0')}h`;
}

/** Lays rows out in columns under a header, like `docker ps`. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
      .join('  ')
      .trimEnd();
  return [line(header), ...rows.map(line)].join('\n');
}

/** `host:port` of a metrics URL (the path is always /metrics), for the status table. */
function metricsAddress(url: string): string {
  try {
    return new URL(url).host;
  } catch {
    return url;
  }
}

/** The table of replicas `berth status` and `berth up` print. */
export function renderStatus(st: StackStatus, restartsByPid: Map<number, number> = new Map()): string {
  const rows: string[][] = [];
  for (const s of st.services) {
    for (const i of s.instances) {
      const restarts = restartsByPid.get(i.pid);
      rows.push([
        i.service,
        i.node,
        i.instance.slice(0, 8),
        String(i.pid),
        i.version,
        formatUptime(i.uptimeSeconds),
        restarts === undefined ? '-' : String(restarts),
        i.metrics ? metricsAddress(i.metrics) : '-',
        i.health === 'healthy' ? 'healthy' : `unhealthy (${formatProblems(i.problems)})`,
      ]);
    }
  }
  const lines = [
    table(['SERVICE', 'NODE', 'INSTANCE', 'PID', 'VERSION', 'UPTIME', 'RESTARTS', 'METRICS', 'HEALTH'], rows),
  ];
  for (const m of st.missing) lines.push(`missing: ${m}`);
  return `${lines.join('\n')}\n`;
}
