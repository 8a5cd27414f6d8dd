import { BerthError } from '@berth/api';
import { describe, expect, it } from 'vitest';
import { RequestCache } from './request-cache.js';

const exec = {
  kind: 'exec' as const,
  request: { containerId: 'c1', cmd: ['true'], tty: false, stdin: false, stdout: true, stderr: false },
};

describe('RequestCache', () => {
  it('hands a request out once per token', () => {
    const cache = new RequestCache(60_000, 10, Date.now);
    const token = cache.insert(exec);
    expect(token).toMatch(/^[A-Za-z0-9_-]{16}$/);
    expect(cache.consume('exec', token)).toEqual(exec);
    expect(cache.consume('exec', token)).toBeUndefined();
  });

  it('mints distinct tokens', () => {
    const cache = new RequestCache(60_000, 1000, Date.now);
    const tokens = new Set(Array.from({ length: 500 }, () => cache.insert(exec)));
    expect(tokens.size).toBe(500);
  });

  it('refuses a token after its time to live', () => {
    let now = 1_000;
    const cache = new RequestCache(60_000, 10, () => now);
    const token = cache.insert(exec);
    now += 60_001;
    expect(cache.consume('exec', token)).toBeUndefined();
  });

  it('refuses a token presented for another kind, and burns it', () => {
    const cache = new RequestCache(60_000, 10, Date.now);
    const token = cache.insert(exec);
    expect(cache.consume('attach', token)).toBeUndefined();
    expect(cache.consume('exec', token)).toBeUndefined();
  });

  it('holds at most maxInFlight unused tokens, dropping expired ones first', () => {
    let now = 0;
    const cache = new RequestCache(1_000, 2, () => now);
    cache.insert(exec);
    cache.insert(exec);
    expect(() => cache.insert(exec)).toThrow(BerthError);
    try {
      cache.insert(exec);
    } catch (err) {
      expect((err as BerthError).code).toBe('RESOURCE_EXHAUSTED');
    }
    now = 1_001;
    expect(() => cache.insert(exec)).not.toThrow();
    expect(cache.size).toBe(1);
  });
});
