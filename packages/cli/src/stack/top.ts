// `berth service top`: a live view of each service replica's request rate, error rate, p95 latency and
// in-flight requests, from the Prometheus endpoints the replicas advertise in NATS discovery.
import { setTimeout as sleep } from 'node:timers/promises';
import { BerthError, Code } from '@berth/api';
import { parsePrometheusText, type Sample } from '@berth/kit/metrics-text';
import { RequestStrategy, type ServiceInfo } from 'nats';
import type { CliContext } from '../context.js';
import { table } from './discovery.js';
import { STACK_SERVICES } from './plan.js';
import { formatLatency, formatRate, type TopFigures, topFigures } from './top-figures.js';

/** One replica as discovery lists it, with where its metrics are. */
export interface TopTarget {
  service: string;
  node: string;
  pid: number;
  url: string;
}

/** One row of `berth service top`: a replica and its figures, or why it has none. */
export interface TopRow extends TopTarget {
  figures: TopFigures | null;
  error?: string;
}

const SCRAPE_TIMEOUT_MS = 2000;

/** Every stack service replica that advertises a metrics endpoint, in stack order. */
async function targets(ctx: CliContext): Promise<TopTarget[]> {
  const nc = await ctx.nats();
  const client = nc.services.client({ strategy: RequestStrategy.JitterTimer, maxWait: 2000, jitter: 250 });
  const out: TopTarget[] = [];
  try {
    for await (const i of (await client.info()) as AsyncIterable<ServiceInfo>) {
      const url = i.metadata?.metrics;
      if (!url || !(STACK_SERVICES as readonly string[]).includes(i.name)) continue;
      out.push({ service: i.name, node: i.metadata?.node ?? '?', pid: Number(i.metadata?.pid ?? 0), url });
    }
  } catch {
    // No responders: nothing runs, which the caller reports.
  }
  const order = (s: string) => (STACK_SERVICES as readonly string[]).indexOf(s);
  return out.sort(
    (a, b) => order(a.service) - order(b.service) || a.node.localeCompare(b.node) || a.pid - b.pid,
  );
}

async function scrape(url: string): Promise<Sample[]> {
  const res = await fetch(url, { signal: AbortSignal.timeout(SCRAPE_TIMEOUT_MS) });
  if (!res.ok) throw new Error(`HTTP ${res.status}`);
  return parsePrometheusText(await res.text());
}

/** Scrapes every target twice, `seconds` apart, and computes each replica's figures. */
export async function sampleTop(ctx: CliContext, seconds: number): Promise<TopRow[]> {
  const list = await targets(ctx);
  const first = await Promise.all(list.map((t) => scrape(t.url).catch((e: Error) => e)));
  const t0 = performance.now();
  await sleep(seconds * 1000);
  const second = await Promise.all(list.map((t) => scrape(t.url).catch((e: Error) => e)));
  const dt = (performance.now() - t0) / 1000;
  return list.map((t, i) => {
    const a = first[i];
    const b = second[i];
    if (a instanceof Error || b instanceof Error || !a || !b) {
      const e = [a, b].find((x): x is Error => x instanceof Error);
      return { ...t, figures: null, error: `cannot scrape ${t.url}: ${e?.message ?? 'no answer'}` };
    }
    return { ...t, figures: topFigures(a, b, dt, t.service) };
  });
}

/** Renders the rows as the table `berth service top` prints. */
export function renderTop(rows: TopRow[], seconds: number): string {
  const cells = rows.map((r) => {
    const f = r.figures;
    return [
      r.service,
      r.node,
      String(r.pid),
      f ? formatRate(f.rate) : '-',
      f ? formatRate(f.errorRate) : '-',
      f ? formatLatency(f.p95) : '-',
      f ? String(f.inFlight) : '-',
      f?.cpuPercent != null ? f.cpuPercent.toFixed(1) : '-',
      f?.rssBytes != null ? `${Math.round(f.rssBytes / 2 ** 20)}M` : '-',
      r.error ?? '',
    ];
  });
  const head = ['SERVICE', 'NODE', 'PID', 'REQ/S', 'ERR/S', 'P95', 'INFLIGHT', 'CPU%', 'RSS', ''];
  return `every ${seconds}s, ${new Date().toISOString()}\n${table(head, cells)}\n`;
}

function parseInterval(v: unknown): number {
  if (v === undefined) return 2;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0.2 || n > 3600) {
    throw new BerthError(Code.INVALID_ARGUMENT, `--interval "${String(v)}": seconds from 0.2 to 3600`);
  }
  return n;
}

/**
 * `berth service top [--interval S] [--once] [--json]`: refreshes the table every interval until
 * interrupted; --once (or --json) prints one window and exits.
 */
export async function top(args: { values: Record<string, unknown> }, ctx: CliContext): Promise<number> {
  const seconds = parseInterval(args.values.interval);
  const once = Boolean(args.values.once || args.values.json);
  let stop = false;
  const onSigint = () => {
    stop = true;
  };
  process.once('SIGINT', onSigint);
  try {
    do {
      const rows = await sampleTop(ctx, seconds);
      if (rows.length === 0) {
        throw new BerthError(
          Code.UNAVAILABLE,
          "no berth service advertises metrics: is berth up (with metricsAddress not 'off')?",
        );
      }
      if (args.values.json) {
        ctx.out.write(`${JSON.stringify({ intervalSeconds: seconds, replicas: rows }, null, 2)}\n`);
      } else {
        // Redraw in place on a terminal; a pipe gets one table per window.
        if (!once && ctx.out.isTTY) ctx.out.write('\x1b[H\x1b[2J');
        ctx.out.write(renderTop(rows, seconds));
      }
    } while (!once && !stop);
  } finally {
    process.off('SIGINT', onSigint);
  }
  return 0;
}
