import { describe, expect, it } from 'vitest';
import { topLevelKeys } from './json-keys.js';

describe('topLevelKeys', () => {
  it('lists the top-level keys in order, a repeated one twice', () => {
    expect(topLevelKeys('{"level":30,"pid":1,"msg":"x","pid":2}')).toEqual(['level', 'pid', 'msg', 'pid']);
  });

  it('skips keys of nested objects and arrays, and quotes inside strings', () => {
    const line = JSON.stringify({ a: { b: 1, c: [{ d: 2 }] }, e: 'say "f": 3', 'g\\"h': [1, '{"i":4}'] });
    expect(topLevelKeys(line)).toEqual(['a', 'e', 'g\\\\\\"h']);
  });

  it('stops at the end of a line cut inside a string', () => {
    expect(topLevelKeys('{"a":1,"b":"cut short')).toEqual(['a', 'b']);
  });
});
