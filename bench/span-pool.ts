/**
 * Pooling the span trees of many calls of one RPC (cri-pod-trace.ts, cri-ctr-trace.ts): per span
 * (service, name and its occurrence in the trace) the median start from the call's own start and
 * the median duration. One trace is a sample of one; the medians of many say which step is on the
 * critical path. A span's start is whole milliseconds (the OTel SDK takes it from Date.now()),
 * its duration exact: starts place steps in order, durations measure them.
 */
import { readFileSync } from 'node:fs';
import type { SpanRecord } from '@berth/kit/tracing';

/** The median of some numbers (0 for none). */
export const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? (s[m] ?? 0) : ((s[m - 1] ?? 0) + (s[m] ?? 0)) / 2;
};

/** Per span key (service, name, n-th of that name in its trace): starts and durations in ms. */
export function pool(traces: SpanRecord[][]): Map<string, { starts: number[]; durs: number[] }> {
  const out = new Map<string, { starts: number[]; durs: number[] }>();
  for (const spans of traces) {
    const root = spans.find((s) => !s.parentSpanId) ?? spans[0];
    if (!root) continue;
    const seen = new Map<string, number>();
    for (const s of [...spans].sort((a, b) => a.startUs - b.startUs)) {
      const base = `${s.service.padEnd(16)} ${s.name}`;
      const n = (seen.get(base) ?? 0) + 1;
      seen.set(base, n);
      const key = n > 1 ? `${base} #${n}` : base;
      const e = out.get(key) ?? { starts: [], durs: [] };
      e.starts.push((s.startUs - root.startUs) / 1000);
      e.durs.push((s.endUs - s.startUs) / 1000);
      out.set(key, e);
    }
  }
  return out;
}

/** The traces (spans grouped by trace id) whose root span is a call of `op`, oldest first. */
export function tracesOf(spans: SpanRecord[], op: string): SpanRecord[][] {
  const byTrace = new Map<string, SpanRecord[]>();
  for (const s of spans) byTrace.set(s.traceId, [...(byTrace.get(s.traceId) ?? []), s]);
  return [...byTrace.values()]
    .filter((t) => t.some((s) => !s.parentSpanId && s.name.endsWith(`/${op}`)))
    .sort((a, b) => Math.min(...a.map((s) => s.startUs)) - Math.min(...b.map((s) => s.startUs)));
}

/** The pooled table of `traces`, one line per span key, ordered by median start. */
export function poolTable(traces: SpanRecord[][]): string {
  const rows = [...pool(traces).entries()].sort((a, b) => median(a[1].starts) - median(b[1].starts));
  return rows
    .map(([key, e]) => {
      const n = e.durs.length < traces.length ? ` (in ${e.durs.length})` : '';
      return `${median(e.starts).toFixed(1).padStart(8)} ${median(e.durs).toFixed(2).padStart(9)}  ${key}${n}\n`;
    })
    .join('');
}

/** CPU time (user + system, ms) of a process and its reaped children, or 0 once it is gone. */
export function cpuMs(pid: number): number {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
    // utime, stime, cutime, cstime are fields 14-17 (11-14 after the name), in clock ticks.
    return [11, 12, 13, 14].reduce((sum, i) => sum + Number(f[i] ?? 0), 0) * 10;
  } catch {
    return 0;
  }
}
