import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';

// BERTH_CRI_TIMING: the phases of each call, by RPC, written as JSON (percentiles and rows).

const dir = mkdtempSync(join(tmpdir(), 'berth-cri-timing-'));
const file = join(dir, 'timing.json');

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('call timing', () => {
  it('keeps the phases of each finished call and writes them per RPC', async () => {
    process.env.BERTH_CRI_TIMING = file;
    // Read at load: this file's module instance is its own (vitest isolates test files).
    const t = await import('./call-timing.js');
    expect(t.timingOn).toBe(true);
    const us = (n: number) => BigInt(n * 1000);
    t.recordCall(
      { recv: us(100), idle: us(50), cpu: t.cpuNow(), decoded: us(110), replied: us(140), rpc: 'R/A' },
      us(150),
    );
    t.recordCall(
      { recv: us(0), idle: us(7), cpu: t.cpuNow(), decoded: us(30), replied: us(60), rpc: 'R/A' },
      us(100),
    );
    // A call that never reached its handler (no rpc) is not counted.
    t.recordCall({ recv: us(0), idle: 0n, cpu: t.cpuNow() }, us(10));
    t.recordTail('R/A', process.hrtime.bigint());
    t.recordTail('R/B', process.hrtime.bigint() - 5_000n);
    t.writeTimings();
    const out = JSON.parse(readFileSync(file, 'utf8')) as Record<
      string,
      { n: number; rows: number[][] } & Record<string, { p50: number }>
    >;
    expect(Object.keys(out)).toEqual(['R/A', 'R/B']);
    // The bookkeeping after the write: its own count and percentiles (R/B had no phases).
    expect(out['R/A']?.tail).toMatchObject({ n: 1 });
    expect(out['R/B']?.tail?.p50).toBeGreaterThanOrEqual(5);
    expect(out['R/B']?.n).toBe(0);
    expect(out['R/A']?.n).toBe(2);
    expect(out['R/A']?.rows.map((r) => r.slice(0, 5))).toEqual([
      [10, 30, 10, 50, 50],
      [30, 30, 40, 100, 7],
    ]);
    expect(out['R/A']?.['recv->written']?.p50).toBe(100);
    expect(out['R/A']?.rows[0]).toHaveLength(7);
  });

  it('counts the garbage collection within a call and the idle gap before it', async () => {
    process.env.BERTH_CRI_TIMING = file;
    const t = await import('./call-timing.js');
    const recv = process.hrtime.bigint();
    // Enough short-lived garbage for several young-generation collections.
    let keep = 0;
    for (let i = 0; i < 200_000; i++) keep += new Array(64).fill(i).length;
    const written = process.hrtime.bigint();
    expect(keep).toBe(200_000 * 64);
    t.recordCall({ recv, idle: 0n, cpu: t.cpuNow(), decoded: recv, replied: recv, rpc: 'R/GC' }, written);
    // GC entries reach the observer asynchronously: wait until this call's have.
    await vi.waitFor(() => {
      t.writeTimings();
      const out = JSON.parse(readFileSync(file, 'utf8')) as Record<string, { rows: number[][] }>;
      expect(out['R/GC']?.rows[0]?.[6]).toBeGreaterThan(0);
    });
  });
});
