/**
 * What every benchmark measures with: percentiles of samples, a one-line summary, and the memory
 * of a process as the kernel counts it.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { loadavg } from 'node:os';

/** The p-th percentile (nearest rank) of `xs`; NaN when there are none. */
export function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))] ?? Number.NaN;
}

/** The 1, 5 and 15 min load averages, two decimals each, as the benchmarks print them. */
export function loadText(): string {
  return loadavg()
    .map((l) => l.toFixed(2))
    .join(' ');
}

/** `name: n=.. p50=.. ms p95=.. ms min=.. ms max=.. ms`, one decimal. */
export function summary(name: string, xs: number[]): string {
  const f = (n: number) => n.toFixed(1);
  return `${name}: n=${xs.length} p50=${f(pct(xs, 50))} ms p95=${f(pct(xs, 95))} ms min=${f(Math.min(...xs))} ms max=${f(Math.max(...xs))} ms`;
}

/** A `Field: N kB` line of a /proc file of `pid`, in KiB; 0 when the process is gone. */
function procKiB(pid: number, file: 'smaps_rollup' | 'status', field: 'Pss' | 'VmRSS'): number {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/${file}`, 'utf8'));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

/** Proportional set size of a process in KiB (shared pages split between their sharers). */
export function pssKiB(pid: number): number {
  return procKiB(pid, 'smaps_rollup', 'Pss');
}

/** Resident set size of a process in KiB. */
export function rssKiB(pid: number): number {
  return procKiB(pid, 'status', 'VmRSS');
}

/** Pids whose executable path ends with `exe` and whose command line contains `marker`. */
export function pidsOf(exe: string, marker: string): number[] {
  return readdirSync('/proc').flatMap((d) => {
    if (!/^\d+$/.test(d)) return [];
    try {
      const cmd = readFileSync(`/proc/${d}/cmdline`, 'utf8');
      return cmd.split('\0')[0]?.endsWith(exe) && cmd.includes(marker) ? [Number(d)] : [];
    } catch {
      return []; // gone meanwhile
    }
  });
}
