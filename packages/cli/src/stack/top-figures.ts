import { histogramQuantile, type Sample } from '@berth/kit/metrics-text';

/** What `berth service top` shows for one replica over one sampling window. */
export interface TopFigures {
  /** Requests answered per second (NATS operations, and CRI calls for the cri-gateway). */
  rate: number;
  /** Of those, answered with an error, per second. */
  errorRate: number;
  /** 95th percentile latency (s) of the requests answered in the window; null without any. */
  p95: number | null;
  /** Requests being handled at the end of the window. */
  inFlight: number;
  /** CPU use in the window, in percent of one core; null when not reported. */
  cpuPercent: number | null;
  /** Resident memory at the end of the window, in bytes; null when not reported. */
  rssBytes: number | null;
}

/** The request metric families berth exports: the kit's per operation, the gateway's per RPC. */
const FAMILIES = ['berth_requests', 'berth_cri_requests'] as const;
const DURATIONS = ['berth_request_duration_seconds', 'berth_cri_request_duration_seconds'] as const;

function sum(samples: Sample[], name: string, pred: (s: Sample) => boolean = () => true): number {
  let total = 0;
  for (const s of samples) if (s.name === name && pred(s)) total += s.value;
  return total;
}

function one(samples: Sample[], name: string): number | null {
  const s = samples.find((x) => x.name === name);
  return s ? s.value : null;
}

/** Cumulative `le` buckets of all request-latency series together (ops and outcomes summed). */
function buckets(samples: Sample[], mine: (s: Sample) => boolean): Map<number, number> {
  const out = new Map<number, number>();
  for (const s of samples) {
    if (!DURATIONS.some((d) => s.name === `${d}_bucket`) || !mine(s)) continue;
    const le = s.labels.le === '+Inf' ? Number.POSITIVE_INFINITY : Number(s.labels.le);
    out.set(le, (out.get(le) ?? 0) + s.value);
  }
  return out;
}

/**
 * The figures of one replica from two scrapes `seconds` apart. Counters are differenced (a
 * restart in between, seen as a counter going down, counts from zero); the p95 comes from the
 * difference of the latency histograms, so it covers only this window. With `service`, only
 * that service's request series count: a co-hosted process serves every service's on one
 * endpoint (its CPU and memory figures are the whole process's).
 */
export function topFigures(before: Sample[], after: Sample[], seconds: number, service?: string): TopFigures {
  const dt = Math.max(seconds, 1e-3);
  const mine = (s: Sample) => service === undefined || s.labels.service === service;
  const delta = (name: string, pred: (s: Sample) => boolean = mine) => {
    const a = sum(after, name, pred);
    const b = sum(before, name, pred);
    return a >= b ? a - b : a;
  };
  const isError = (s: Sample) => mine(s) && s.labels.outcome !== undefined && s.labels.outcome !== 'ok';
  let requests = 0;
  let errors = 0;
  let inFlight = 0;
  for (const f of FAMILIES) {
    requests += delta(`${f}_total`);
    errors += delta(`${f}_total`, isError);
    inFlight += sum(after, `${f}_in_flight`, mine);
  }
  const b0 = buckets(before, mine);
  const b1 = buckets(after, mine);
  const window = [...b1].map(([le, count]) => ({ le, count: Math.max(0, count - (b0.get(le) ?? 0)) }));
  const q = requests > 0 ? histogramQuantile(0.95, window) : Number.NaN;
  const cpu0 = one(before, 'process_cpu_seconds_total');
  const cpu1 = one(after, 'process_cpu_seconds_total');
  return {
    rate: requests / dt,
    errorRate: errors / dt,
    p95: Number.isNaN(q) ? null : q,
    inFlight,
    cpuPercent: cpu0 !== null && cpu1 !== null && cpu1 >= cpu0 ? ((cpu1 - cpu0) / dt) * 100 : null,
    rssBytes: one(after, 'process_resident_memory_bytes'),
  };
}

/** A latency in seconds as a short text: 850µs, 12.3ms, 1.25s. */
export function formatLatency(s: number | null): string {
  if (s === null) return '-';
  if (s < 0.001) return `${Math.round(s * 1e6)}µs`;
  if (s < 1) return `${(s * 1000).toFixed(s < 0.01 ? 2 : 1)}ms`;
  return `${s.toFixed(2)}s`;
}

/** A rate per second with sensible precision. */
export function formatRate(r: number): string {
  if (r === 0) return '0';
  return r < 10 ? r.toFixed(2) : r.toFixed(1);
}
