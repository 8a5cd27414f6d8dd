/**
 * Busy share of each berth service over a benchmark run, from its own Prometheus endpoints:
 * scrape every replica before and after, and divide the deltas by the run's wall time.
 *  - cpu: process_cpu_seconds_total (user + system of the Node process). Additive across
 *    services; on this 2-core machine a service at 1.0 is one core saturated.
 *  - handler: the sum of berth_request_duration_seconds (the gateway: of
 *    berth_cri_request_duration_seconds; time requests spent in handlers,
 *    waiting included). Not additive: a task-service handler waits on the shim's and the
 *    snapshot-service's handlers, so it counts their time again. Above 1.0 means requests overlap.
 * The embedded nats-server and redis-server export no metrics; their CPU comes from /proc.
 */
import { readFileSync } from 'node:fs';
import { parsePrometheusText, type Sample } from '@berth/kit/metrics-text';
import type { StatusJson } from '../tests/harness/stack.js';

/** One scrape target: a service replica's metrics URL. */
export interface Target {
  service: string;
  instance: string;
  url: string;
}

/** The metrics URL of every replica `berth status --json` lists. */
export function targetsOf(status: StatusJson): Target[] {
  return status.services.flatMap((s) =>
    s.instances.flatMap((i) =>
      i.metrics ? [{ service: s.service, instance: i.instance, url: i.metrics }] : [],
    ),
  );
}

/** The figures of one replica at one moment that busy shares are computed from. */
interface Reading {
  cpu: number;
  handler: number;
  /** Handler seconds per op, e.g. `pull` -> 12.3. */
  ops: Map<string, number>;
}

const sum = (xs: Sample[], name: string) =>
  xs.filter((s) => s.name === name).reduce((t, s) => t + s.value, 0);

const HANDLER = 'berth_request_duration_seconds_sum';
const CRI_HANDLER = 'berth_cri_request_duration_seconds_sum';

async function read(t: Target): Promise<Reading> {
  const res = await fetch(t.url);
  if (!res.ok) throw new Error(`scrape of ${t.service} ${t.instance} (${t.url}): HTTP ${res.status}`);
  const xs = parsePrometheusText(await res.text());
  const ops = new Map<string, number>();
  for (const s of xs) {
    // The gateway's CRI RPCs have their own histogram, labelled by rpc.
    if (s.name !== HANDLER && s.name !== CRI_HANDLER) continue;
    const op = s.labels.op ?? s.labels.rpc ?? '?';
    ops.set(op, (ops.get(op) ?? 0) + s.value);
  }
  return { cpu: sum(xs, 'process_cpu_seconds_total'), handler: sum(xs, HANDLER) + sum(xs, CRI_HANDLER), ops };
}

/**
 * CPU seconds (user + system) a process used so far, from /proc; 0 when it is gone. With
 * `children`, the CPU of its exited and waited-for children instead (the shim's runc runs).
 */
export function procCpuSeconds(pid: number, children = false): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // stat fields 14-17 (utime, stime, cutime, cstime) are 11-14 counted from the state field.
    const i = children ? 13 : 11;
    return (Number(f[i]) + Number(f[i + 1])) / 100;
  } catch {
    return 0;
  }
}

/** Everything read at one moment: each replica's reading and the embedded servers' CPU. */
export interface Snapshot {
  replicas: Map<Target, Reading>;
  embedded: Map<string, number>;
}

/** Scrapes every target and reads the other processes' CPU (`others`: name -> CPU seconds now). */
export async function snapshot(targets: Target[], others: Map<string, () => number>): Promise<Snapshot> {
  const replicas = new Map<Target, Reading>();
  for (const t of targets) replicas.set(t, await read(t));
  const embedded = new Map([...others].map(([n, cpu]) => [n, cpu()]));
  return { replicas, embedded };
}

/** One service's busy share over a run, its replicas summed. */
export interface Busy {
  service: string;
  replicas: number;
  /** CPU seconds / wall seconds. */
  cpu: number;
  /** Handler seconds / wall seconds; NaN for processes without request metrics. */
  handler: number;
  /** The op that took most handler time, with its share. */
  topOp: string;
}

/** Busy shares between two snapshots over `wallS` seconds, services in a fixed order. */
export function busyShares(a: Snapshot, b: Snapshot, wallS: number): Busy[] {
  const by = new Map<string, Busy & { ops: Map<string, number> }>();
  for (const [t, after] of b.replicas) {
    const before = a.replicas.get(t);
    if (!before) continue;
    const e = by.get(t.service) ?? {
      service: t.service,
      replicas: 0,
      cpu: 0,
      handler: 0,
      topOp: '',
      ops: new Map<string, number>(),
    };
    e.replicas++;
    e.cpu += (after.cpu - before.cpu) / wallS;
    e.handler += (after.handler - before.handler) / wallS;
    for (const [op, s] of after.ops) e.ops.set(op, (e.ops.get(op) ?? 0) + s - (before.ops.get(op) ?? 0));
    by.set(t.service, e);
  }
  const out: Busy[] = [...by.values()]
    .sort((x, y) => x.service.localeCompare(y.service))
    .map(({ ops, ...e }) => {
      const top = [...ops].sort((x, y) => y[1] - x[1])[0];
      return { ...e, topOp: top && top[1] > 0 ? `${top[0]} ${(top[1] / wallS).toFixed(2)}` : '-' };
    });
  for (const [name, after] of b.embedded) {
    const cpu = (after - (a.embedded.get(name) ?? after)) / wallS;
    out.push({ service: name, replicas: 1, cpu, handler: Number.NaN, topOp: '-' });
  }
  return out;
}
