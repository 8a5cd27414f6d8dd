import type { ContainerInfo, ShimStats } from '@berth/api';
import { describe, expect, it } from 'vitest';
import { type CpuSample, cpuPercent, percentText, statsRows } from './stats.js';

const info = (id: string, name: string) => ({ container: { id, name } }) as unknown as ContainerInfo;
const stats = (usageNs: number, timestamp: string): ShimStats => ({
  cgroupVersion: 2,
  timestamp,
  cpu: { usageNs, userNs: 0, systemNs: 0 },
  memory: { usageBytes: 3 * 1024 * 1024, workingSetBytes: 0, rssBytes: 0, cacheBytes: 0 },
  pids: { current: 2 },
});

describe('cpuPercent', () => {
  it('is CPU time over wall time, 100% per busy core, as docker stats', () => {
    const a = { usageNs: 1_000_000_000, atMs: 10_000 };
    expect(cpuPercent(a, { usageNs: 1_500_000_000, atMs: 11_000 })).toBeCloseTo(50);
    // Two cores busy for the whole second.
    expect(cpuPercent(a, { usageNs: 3_000_000_000, atMs: 11_000 })).toBeCloseTo(200);
    expect(cpuPercent(a, { usageNs: 1_000_000_000, atMs: 12_000 })).toBe(0);
  });

  it('has no figure without an earlier sample, without time passing or after a restart', () => {
    const a: CpuSample = { usageNs: 5e9, atMs: 10_000 };
    expect(cpuPercent(undefined, a)).toBeUndefined();
    expect(cpuPercent(a, { usageNs: 6e9, atMs: 10_000 })).toBeUndefined();
    expect(cpuPercent(a, { usageNs: 1e6, atMs: 11_000 })).toBeUndefined();
    expect(percentText(undefined)).toBe('--');
    expect(percentText(12.345)).toBe('12.35%');
  });
});

describe('statsRows', () => {
  it('prints CPU % against the previous round and remembers this one', () => {
    const prev = new Map<string, CpuSample>();
    const c = info('0123456789abcdef', 'web');
    const first = statsRows([{ info: c, stats: stats(2e9, '2026-12-01T10:00:00.000Z') }], prev);
    expect(first).toMatch(/^CONTAINER ID\s+NAME\s+CPU %\s+MEM USAGE \/ LIMIT\s+PIDS\n/);
    expect(first).toMatch(/0123456789ab\s+web\s+--\s+3\.00MiB \/ --\s+2\n/);
    const second = statsRows([{ info: c, stats: stats(2.25e9, '2026-12-01T10:00:01.000Z') }], prev);
    expect(second).toMatch(/web\s+25\.00%\s+3\.00MiB/);
    // Stopped meanwhile: no figures, and no stale starting point if it comes back.
    expect(statsRows([{ info: c, stats: undefined }], prev)).toMatch(/web\s+--\s+-- \/ --\s+--\n/);
    expect(prev.has('0123456789abcdef')).toBe(false);
  });
});
