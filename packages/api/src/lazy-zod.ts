// zod as the contract modules use it (`import * as z from './lazy-zod.js'`), with schemas built on
// first use instead of at import. Building every contract's schemas when @berth/api is imported
// cost each process ~25 ms of CPU (most of `berth ps`'s start beyond Node's own, see
// docs/benchmarks.md) and the memory of schemas it never uses: a CLI command calls one or two
// operations, a service answers its own. Here `z.object({...})`, and every builder call chained on
// it (`.extend()`, `.optional()`, `.min(1)`), only records how to build the schema; the first other
// use (parse, `.shape`, `instanceof`) builds it, once. Building a schema is pure, so when it is
// built changes nothing a caller sees: the exported value is the same object for everyone, and it
// parses, types and compares as the schema itself does.
import * as zod from 'zod';

export * from 'zod';

/**
 * Methods of zod schemas that only build a new schema from this one (no parse, no side effect):
 * called on a schema not built yet, they return a deferred schema too. Any other property builds
 * the schema first, so a method missing here costs laziness, never correctness.
 */
const BUILDERS = new Set([
  ...['optional', 'exactOptional', 'nullable', 'nullish', 'nonoptional', 'default', 'prefault'],
  ...['catch', 'readonly', 'brand', 'describe', 'array', 'or', 'and', 'pipe', 'transform'],
  ...['refine', 'superRefine', 'overwrite', 'check'],
  ...['min', 'max', 'length', 'nonempty', 'gt', 'gte', 'lt', 'lte', 'int', 'safe', 'finite'],
  ...['positive', 'nonnegative', 'negative', 'nonpositive', 'multipleOf', 'step'],
  ...['regex', 'includes', 'startsWith', 'endsWith', 'lowercase', 'uppercase', 'trim'],
  ...['normalize', 'toLowerCase', 'toUpperCase'],
  ...['extend', 'safeExtend', 'merge', 'pick', 'omit', 'partial', 'exactPartial', 'required'],
  ...['keyof', 'catchall', 'passthrough', 'loose', 'strict', 'strip', 'extract', 'exclude'],
]);

/**
 * The target behind each deferred schema: how to build it, then what was built (the builder is
 * dropped once used). State is private so the proxy shows none of it.
 */
class Deferred {
  #build: (() => object) | undefined;
  #real: object | undefined;
  constructor(build: () => object) {
    this.#build = build;
  }
  static isBuilt(d: Deferred): boolean {
    return d.#real !== undefined;
  }
  /** The built object, built now if it was not yet. */
  static real(d: Deferred): object {
    if (d.#real === undefined) {
      d.#real = (d.#build as () => object)();
      d.#build = undefined;
    }
    return d.#real;
  }
}

/**
 * One handler for every deferred schema (a closure set per schema cost the CLI time and every
 * process memory): the proxy reports the built schema's properties, keys and prototype.
 * Descriptors are reported configurable because the target does not hold them (a Proxy invariant).
 */
const handler: ProxyHandler<Deferred> = {
  get(d, key) {
    if (!Deferred.isBuilt(d) && typeof key === 'string' && BUILDERS.has(key))
      return (...args: unknown[]) =>
        deferred(() => {
          const schema = Deferred.real(d);
          const method = Reflect.get(schema, key) as (...a: unknown[]) => object;
          return Reflect.apply(method, schema, args.map(unwrap));
        });
    return Reflect.get(Deferred.real(d), key);
  },
  set: (d, key, value) => Reflect.set(Deferred.real(d), key, value),
  has: (d, key) => Reflect.has(Deferred.real(d), key),
  ownKeys: (d) => Reflect.ownKeys(Deferred.real(d)),
  getOwnPropertyDescriptor(d, key) {
    const desc = Reflect.getOwnPropertyDescriptor(Deferred.real(d), key);
    return desc === undefined ? undefined : { ...desc, configurable: true };
  },
  defineProperty: (d, key, desc) => Reflect.defineProperty(Deferred.real(d), key, desc),
  deleteProperty: (d, key) => Reflect.deleteProperty(Deferred.real(d), key),
  getPrototypeOf: (d) => Reflect.getPrototypeOf(Deferred.real(d)),
  setPrototypeOf: (d, proto) => Reflect.setPrototypeOf(Deferred.real(d), proto),
};

/** The target of each stand-in, to hand zod the built schema instead of the stand-in. */
const targets = new WeakMap<object, Deferred>();

/** A stand-in for the object `build` returns, built on the first use that is not a builder call. */
function deferred<T extends object>(build: () => T): T {
  const d = new Deferred(build);
  const proxy = new Proxy(d, handler);
  targets.set(proxy, d);
  return proxy as unknown as T;
}

/** The built schema for a stand-in (built now), anything else as it is. */
function real(v: unknown): unknown {
  const d = typeof v === 'object' && v !== null ? targets.get(v) : undefined;
  return d === undefined ? v : Deferred.real(d);
}

/**
 * A builder's argument with the stand-ins in it (a schema, the schemas of a shape or of a list of
 * options) replaced by the built schemas: a built schema then holds only built schemas, so parsing
 * runs through no proxy below the one it is called on (through stand-ins it took twice as long).
 * Getters of a shape are kept as they are.
 */
function unwrap(arg: unknown): unknown {
  if (Array.isArray(arg)) return arg.map(real);
  if (typeof arg !== 'object' || arg === null || targets.has(arg)) return real(arg);
  const proto = Object.getPrototypeOf(arg);
  if (proto !== Object.prototype && proto !== null) return arg;
  const out: Record<PropertyKey, unknown> = Object.create(proto);
  for (const [key, desc] of Object.entries(Object.getOwnPropertyDescriptors(arg)))
    Object.defineProperty(out, key, 'value' in desc ? { ...desc, value: real(desc.value) } : desc);
  return out;
}

/** A zod factory whose schemas are built on first use; its arguments are kept as given. */
function lazy<F extends (...args: never[]) => object>(factory: F): F {
  return ((...args: unknown[]) =>
    deferred(() => Reflect.apply(factory, undefined, args.map(unwrap)) as object)) as unknown as F;
}

// The factories the contracts build with. Others (z.tuple, z.coerce...) come from zod itself
// through `export *` and build at once: add them here when a contract starts using them.
export const object = lazy(zod.object);
export const looseObject = lazy(zod.looseObject);
export const strictObject = lazy(zod.strictObject);
export const string = lazy(zod.string);
export const number = lazy(zod.number);
export const int = lazy(zod.int);
export const boolean = lazy(zod.boolean);
export const array = lazy(zod.array);
export const record = lazy(zod.record);
export const partialRecord = lazy(zod.partialRecord);
export const literal = lazy(zod.literal);
export const union = lazy(zod.union);
export const discriminatedUnion = lazy(zod.discriminatedUnion);
export const intersection = lazy(zod.intersection);
export const unknown = lazy(zod.unknown);
export const any = lazy(zod.any);
export const ipv4 = lazy(zod.ipv4);
export const ipv6 = lazy(zod.ipv6);
/** `enum` is a reserved word: exported under its zod name. */
const enumLazy = lazy(zod.enum);

export { enumLazy as enum };
