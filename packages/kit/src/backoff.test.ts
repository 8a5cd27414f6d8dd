import { describe, expect, it } from 'vitest';
import { PassBackoff } from './backoff.js';

/** Runs `passes` passes of a key that fails whenever tried; returns the passes it was tried in. */
function triedIn(b: PassBackoff, passes: number, subject = 'task@1'): number[] {
  const tried: number[] = [];
  for (let n = 1; n <= passes; n++) {
    b.beginPass();
    if (!b.due('ns/t', subject)) continue;
    tried.push(n);
    b.failed('ns/t', subject);
  }
  return tried;
}

describe('PassBackoff', () => {
  it('waits 1, 2, 4 ... passes after failures in a row, at most maxWaitMs at the interval', () => {
    expect(triedIn(new PassBackoff({ maxWaitMs: 5, intervalMs: 1 }), 30)).toEqual([1, 3, 6, 11, 17, 23, 29]);
  });

  it('starts afresh after a success, and for another subject under the key', () => {
    const b = new PassBackoff({ maxWaitMs: 100, intervalMs: 1 });
    expect(triedIn(b, 11)).toEqual([1, 3, 6, 11]);
    expect(b.succeeded('ns/t')).toBe(4);
    expect(b.succeeded('ns/t')).toBe(0);
    expect(triedIn(b, 3)).toEqual([1, 3]);
    // A new task under the same id is tried at once, its first failure waits one pass.
    b.beginPass();
    expect(b.due('ns/t', 'task@1')).toBe(false);
    expect(b.due('ns/t', 'task@2')).toBe(true);
    expect(b.failed('ns/t', 'task@2')).toEqual({ failures: 1, waitPasses: 1 });
  });

  it('forgets keys no longer kept', () => {
    const b = new PassBackoff({ maxWaitMs: 100, intervalMs: 1 });
    b.failed('ns/gone', 's');
    b.failed('ns/kept', 's');
    b.beginPass();
    b.retain(new Set(['ns/kept']));
    expect(b.due('ns/gone', 's')).toBe(true);
    expect(b.due('ns/kept', 's')).toBe(false);
  });
});
