/**
 * Where a benchmark run's time went, from the stack's embedded span store: each span's self
 * time (its duration minus the union of its children's), summed by service over the run's
 * spans. Client spans' self time is counted apart: `bus (nats)` for calls between services (the
 * request on the bus and in the callee's queue before its server span starts), `registry (http)`
 * for registry requests (the registry's own time and the transfer). Self time spent waiting on something with no
 * span of its own (a runc child, the disk) stays with the span that waited.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { readSpans, type SpanRecord } from '@berth/kit/tracing';

/** Self time of one service over a run, with the span names that had the most of it. */
export interface SelfTime {
  service: string;
  seconds: number;
  /** The three span names with the most self time, most first, in seconds. */
  top: [string, number][];
}

/** The length of the union of intervals, in µs. */
function unionUs(xs: [number, number][]): number {
  const s = [...xs].sort((a, b) => a[0] - b[0]);
  let total = 0;
  let end = Number.NEGATIVE_INFINITY;
  for (const [a, b] of s) {
    if (b <= end) continue;
    total += b - Math.max(a, end);
    end = b;
  }
  return total;
}

/**
 * Spans that started in [fromUs, toUs], read once the store holds spans from after `toUs - 1 s`
 * and their count stopped growing (services export in batches every few seconds), at most 20 s.
 */
export async function runSpans(dir: string, fromUs: number, toUs: number): Promise<SpanRecord[]> {
  let last = -1;
  const deadline = Date.now() + 20_000;
  for (;;) {
    const all = (await readSpans(dir).catch(() => [])).filter(
      (s) => s.startUs >= fromUs && s.startUs <= toUs,
    );
    const late = all.some((s) => s.startUs >= toUs - 1e6);
    if ((late && all.length === last) || Date.now() > deadline) return all;
    last = all.length;
    await sleep(1500);
  }
}

/** Self time by service (client spans' as `bus (nats)` or `registry (http)`), most first. */
export function selfTimes(spans: SpanRecord[]): SelfTime[] {
  const children = new Map<string, [number, number][]>();
  for (const s of spans) {
    if (!s.parentSpanId) continue;
    const k = `${s.traceId}/${s.parentSpanId}`;
    const list = children.get(k) ?? [];
    list.push([s.startUs, s.endUs]);
    children.set(k, list);
  }
  const by = new Map<string, { total: number; names: Map<string, number> }>();
  for (const s of spans) {
    const kids = (children.get(`${s.traceId}/${s.spanId}`) ?? []).map(
      ([a, b]) => [Math.max(a, s.startUs), Math.min(b, s.endUs)] as [number, number],
    );
    const self = Math.max(0, s.endUs - s.startUs - unionUs(kids.filter(([a, b]) => b > a)));
    const who =
      s.kind === 2
        ? /^(GET|HEAD|PUT|POST|PATCH|DELETE)\b/.test(s.name)
          ? 'registry (http)'
          : 'bus (nats)'
        : s.service;
    const e = by.get(who) ?? { total: 0, names: new Map<string, number>() };
    e.total += self;
    const name = s.kind === 2 ? `${s.service}: ${s.name}` : s.name;
    e.names.set(name, (e.names.get(name) ?? 0) + self);
    by.set(who, e);
  }
  return [...by]
    .map(([service, e]) => {
      const top = [...e.names]
        .sort((a, b) => b[1] - a[1])
        .slice(0, 3)
        .map(([n, us]): [string, number] => [n, us / 1e6]);
      return { service, seconds: e.total / 1e6, top };
    })
    .sort((a, b) => b.seconds - a.seconds);
}
