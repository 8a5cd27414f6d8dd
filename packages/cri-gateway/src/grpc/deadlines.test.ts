import { describe, expect, it } from 'vitest';
import { Deadlines } from './deadlines.js';

// The deadlines of calls in flight under one timer: each fires once its time has passed, in
// order, unless cleared; an earlier deadline than the timer's moves it; cleared entries go.

/** Resolves with performance.now() when `fire` runs. */
function firing(): { fire: () => void; fired: Promise<number> } {
  let resolve: (t: number) => void = () => undefined;
  const fired = new Promise<number>((r) => {
    resolve = r;
  });
  return { fire: () => resolve(performance.now()), fired };
}

describe('Deadlines', () => {
  it('fires each deadline after its time, an earlier one added later first', async () => {
    const d = new Deadlines();
    const t0 = performance.now();
    const late = firing();
    const early = firing();
    const order: string[] = [];
    d.add(60, () => {
      order.push('late');
      late.fire();
    });
    // Earlier than the timer's: the timer moves to it.
    d.add(15, () => {
      order.push('early');
      early.fire();
    });
    expect(d.size).toBe(2);
    expect(await early.fired).toBeGreaterThanOrEqual(t0 + 15);
    expect(await late.fired).toBeGreaterThanOrEqual(t0 + 60);
    expect(order).toEqual(['early', 'late']);
    expect(d.size).toBe(0);
  });

  it('never fires a cleared deadline; clearing twice is harmless', async () => {
    const d = new Deadlines();
    const fired: string[] = [];
    const a = d.add(10, () => fired.push('a'));
    const b = firing();
    d.add(30, () => {
      fired.push('b');
      b.fire();
    });
    d.clear(a);
    d.clear(a);
    expect(d.size).toBe(1);
    await b.fired;
    expect(fired).toEqual(['b']);
  });

  it('keeps the list short when many calls settle before their deadline', async () => {
    const d = new Deadlines();
    for (let i = 0; i < 1000; i++) d.clear(d.add(120_000, () => expect.fail('cleared deadline fired')));
    const last = firing();
    d.add(5, last.fire);
    await last.fired;
    expect(d.size).toBe(0);
    // The entries list was compacted as calls settled: its length is bounded, not 1001.
    expect((d as unknown as { entries: unknown[] }).entries.length).toBeLessThanOrEqual(130);
  });
});
