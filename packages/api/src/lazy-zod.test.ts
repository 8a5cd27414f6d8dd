import { types } from 'node:util';
import { describe, expect, it } from 'vitest';
import * as zod from 'zod';
import * as api from './index.js';
import * as z from './lazy-zod.js';

/** A shape whose field `a` counts how often zod reads it (reading it is part of building). */
function countingShape() {
  const seen = { reads: 0 };
  const shape = {
    get a() {
      seen.reads++;
      return z.string().min(1);
    },
  };
  return { seen, shape };
}

describe('lazy zod', () => {
  it('builds a schema on its first use, once, and not before', () => {
    const { seen, shape } = countingShape();
    const s = z.object(shape).extend({ b: z.number().int().optional() });
    expect(seen.reads).toBe(0);
    expect(s.parse({ a: 'x', b: 2 })).toEqual({ a: 'x', b: 2 });
    const after = seen.reads;
    expect(after).toBeGreaterThan(0);
    s.parse({ a: 'y' });
    expect(Object.keys(s.shape)).toEqual(['a', 'b']);
    expect(seen.reads).toBe(after);
  });

  it('parses, fails and reports issues exactly as the same schema built by zod', () => {
    const lazy = z.object({
      name: z.string().regex(/^[a-z]+$/, 'lowercase only'),
      mode: z.enum(['ro', 'rw']).default('rw'),
      size: z.number().int().nonnegative().optional(),
      tags: z.record(z.string(), z.string()).optional(),
    });
    const eager = zod.object({
      name: zod.string().regex(/^[a-z]+$/, 'lowercase only'),
      mode: zod.enum(['ro', 'rw']).default('rw'),
      size: zod.number().int().nonnegative().optional(),
      tags: zod.record(zod.string(), zod.string()).optional(),
    });
    for (const input of [
      { name: 'ab' },
      { name: 'A', size: -1.5 },
      { name: 'x', mode: 'no' },
      7,
      undefined,
    ]) {
      const a = lazy.safeParse(input);
      const b = eager.safeParse(input);
      expect(a.success).toBe(b.success);
      expect(a.data).toEqual(b.data);
      expect(a.error?.issues).toEqual(b.error?.issues);
    }
  });

  it('is a zod schema to instanceof, type checks and property reads', () => {
    const s = z.object({ a: z.string() });
    expect(s).toBeInstanceOf(zod.ZodObject);
    expect(s).toBeInstanceOf(zod.ZodType);
    expect(z.string().optional()).toBeInstanceOf(zod.ZodOptional);
    expect(s.def.type).toBe('object');
    expect('shape' in s).toBe(true);
    type S = z.infer<typeof s>;
    const v: S = s.parse({ a: 'x' });
    expect(v.a).toBe('x');
  });

  it('a built schema holds built schemas, so a parse runs through no stand-in below the top', () => {
    const a = z.object({ x: z.string() });
    const s = z
      .object({ a, list: z.array(a), either: z.union([a, z.number()]) })
      .extend({ b: z.string().optional() });
    s.parse({ a: { x: '1' }, list: [], either: 2 });
    expect(types.isProxy(s)).toBe(true);
    for (const inner of [s.shape.a, s.shape.list, s.shape.list.element, s.shape.b, ...s.shape.either.options])
      expect(types.isProxy(inner)).toBe(false);
  });

  it('a union of lazy objects discriminates as zod does', () => {
    const u = z.discriminatedUnion('kind', [
      z.object({ kind: z.literal('a'), a: z.string() }),
      z.object({ kind: z.literal('b'), b: z.number() }),
    ]);
    expect(u.parse({ kind: 'b', b: 1 })).toEqual({ kind: 'b', b: 1 });
    expect(u.safeParse({ kind: 'c' }).success).toBe(false);
  });
});

describe('the contracts, built lazily', () => {
  it('every exported schema and every operation schema builds (no error waits for its first use)', () => {
    const schemas = Object.entries(api).filter(
      ([, v]) => typeof v === 'object' && v !== null && typeof Reflect.get(v, 'safeParse') === 'function',
    );
    expect(schemas.length).toBeGreaterThan(100);
    for (const [name, s] of schemas) {
      expect(s, name).toBeInstanceOf(zod.ZodType);
      expect(() => (s as zod.ZodType).safeParse({}), name).not.toThrow();
    }
    for (const def of Object.values(api.serviceDefs))
      for (const [op, o] of Object.entries(def.ops)) {
        expect(o.input, `${def.name} ${op} input`).toBeInstanceOf(zod.ZodType);
        expect(() => o.input.safeParse({}), `${def.name} ${op} input`).not.toThrow();
        expect(() => o.output.safeParse({}), `${def.name} ${op} output`).not.toThrow();
      }
  });
});
