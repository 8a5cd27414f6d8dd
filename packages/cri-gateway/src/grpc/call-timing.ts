import { writeFileSync } from 'node:fs';
import { PerformanceObserver } from 'node:perf_hooks';

// Opt-in per-RPC timing of berth's CRI server (BERTH_CRI_TIMING=<file>): where a call's time goes
// between its request's bytes reaching JavaScript and its reply's socket write, and the call's
// bookkeeping after that write (its tail: a read that follows waits behind it). Off, every mark is
// one branch on a constant; on, the phases of each call are kept and written as JSON at exit.

const FILE = process.env.BERTH_CRI_TIMING;

/** Whether timing is on for this process. */
export const timingOn = FILE !== undefined && FILE !== '';

/** The marks of one call, in ns from process.hrtime.bigint(). */
export interface CallMarks {
  /** The 'data' callback that carried the request's last frame began. */
  recv: bigint;
  /** How long the connection had been idle (its last reply's write to this recv), ns. */
  idle: bigint;
  /** Process CPU time (user + system, us) at recv. */
  cpu: number;
  decoded?: bigint;
  replied?: bigint;
  rpc?: string;
}

const samples = new Map<string, number[][]>();
/** Per RPC, parallel to samples: [start of the idle gap before recv, written], ns. */
const spans = new Map<string, [number, number][]>();
/** Garbage collections seen while timing: [start, end], ns on process.hrtime's clock. */
const gcs: [number, number][] = [];
/** Per RPC, the bookkeeping after each reply's write (span, metrics, access line), us. */
const tails = new Map<string, number[]>();

/** The process's CPU time so far, us. */
export function cpuNow(): number {
  const u = process.cpuUsage();
  return u.user + u.system;
}

/** Records a finished call: written is the reply's socket write. */
export function recordCall(m: CallMarks, written: bigint): void {
  if (!m.rpc || m.decoded === undefined || m.replied === undefined) return;
  const us = (a: bigint, b: bigint) => Number(b - a) / 1000;
  const row = [
    us(m.recv, m.decoded),
    us(m.decoded, m.replied),
    us(m.replied, written),
    us(m.recv, written),
    Number(m.idle) / 1000,
    cpuNow() - m.cpu,
  ];
  let rows = samples.get(m.rpc);
  let at = spans.get(m.rpc);
  if (!rows || !at) {
    rows = [];
    at = [];
    samples.set(m.rpc, rows);
    spans.set(m.rpc, at);
  }
  rows.push(row);
  at.push([Number(m.recv - m.idle), Number(written)]);
}

/** us of garbage collection within [from, to] (ns). */
function gcWithin(from: number, to: number): number {
  let ns = 0;
  for (const [a, b] of gcs) if (b > from && a < to) ns += Math.min(b, to) - Math.max(a, from);
  return ns / 1000;
}

/** Records how long a call's bookkeeping after its reply's write took (`from` to now). */
export function recordTail(rpc: string, from: bigint): void {
  const us = Number(process.hrtime.bigint() - from) / 1000;
  let xs = tails.get(rpc);
  if (!xs) {
    xs = [];
    tails.set(rpc, xs);
  }
  xs.push(us);
}

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? 0;
}

/** Writes the percentiles and rows per RPC to the BERTH_CRI_TIMING file now (done at exit too). */
export function writeTimings(): void {
  if (!FILE) return;
  const out: Record<string, unknown> = {};
  const names = [
    'recv->decoded',
    'decoded->replied',
    'replied->written',
    'recv->written',
    'idle',
    'cpu',
    'gc',
  ];
  for (const [rpc, rows] of samples) {
    // The GC time within the idle gap before the request and the call itself (us): a collection
    // there delays the reply as much as the call's own work does.
    const at = spans.get(rpc) ?? [];
    rows.forEach((row, i) => {
      const [from, to] = at[i] ?? [0, 0];
      row[6] = gcWithin(from, to);
    });
    const r: Record<string, unknown> = { n: rows.length };
    names.forEach((n, i) => {
      const col = rows.map((row) => row[i] as number);
      r[n] = { p50: pct(col, 50), p90: pct(col, 90), p99: pct(col, 99) };
    });
    r.rows = rows;
    // Each call's idle gap start and reply write (ns, CLOCK_MONOTONIC as perf -k CLOCK_MONOTONIC
    // records): lines it up with a system-wide trace of the same minutes.
    r.at = at;
    out[rpc] = r;
  }
  for (const [rpc, xs] of tails) {
    const r = (out[rpc] ?? { n: 0 }) as Record<string, unknown>;
    r.tail = { n: xs.length, p50: pct(xs, 50), p90: pct(xs, 90), p99: pct(xs, 99) };
    out[rpc] = r;
  }
  writeFileSync(FILE, JSON.stringify(out));
}

if (timingOn) {
  // GC entries carry performance.now() times: moved onto hrtime's clock by their offset now.
  const offset = Number(process.hrtime.bigint()) - performance.now() * 1e6;
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      const start = offset + e.startTime * 1e6;
      gcs.push([start, start + e.duration * 1e6]);
    }
  }).observe({ entryTypes: ['gc'] });
  // At exit a file that cannot be written is reported, not thrown: the process is ending anyway.
  const atExit = () => {
    try {
      writeTimings();
    } catch (err) {
      process.stderr.write(`BERTH_CRI_TIMING: ${(err as Error).message}\n`);
    }
  };
  // The gateway exits through its own SIGTERM handling (process.exit), which runs this.
  process.on('exit', atExit);
}
