import type { ContainerInfo } from '@berth/api';
import { type CriService, criServiceDefinition } from '../proto.js';
import { CriKind, CriLabel, kindOf } from '../runtime/meta.js';

// The gRPC servers serialize a reply with proto-loader's codec (fromObject, then encode): for a
// ContainerStatus with its verbose info that is most of the handler's CPU. A read the kubelet or
// critest repeats answers from records the gateway keeps in memory, which are replaced, never
// changed in place (runtime/mirror.ts): a reply built from the same record objects is the same
// message, so its bytes are kept with it and written again as they are.

/** The wire bytes kept with a reply object; the servers write them instead of encoding it. */
const encodings = new WeakMap<object, Buffer>();

/** The bytes kept with a reply by withEncoding, or undefined: serialize it as usual. */
export function encodingOf(message: unknown): Buffer | undefined {
  return typeof message === 'object' && message !== null ? encodings.get(message) : undefined;
}

/** Keeps `bytes` as the wire form of `reply` (they must encode exactly it); returns `reply`. */
export function withEncoding<T extends object>(reply: T, bytes: Buffer): T {
  encodings.set(reply, bytes);
  return reply;
}

/**
 * The response serializer of one CRI method (proto-loader's), loaded on first use; it defers to
 * bytes kept with the message by withEncoding.
 */
export function responseEncoder(service: CriService, method: string): (message: object) => Buffer {
  let encode: ((message: object) => Buffer) | undefined;
  return (message) => {
    const kept = encodingOf(message);
    if (kept) return kept;
    if (!encode) {
      const def = criServiceDefinition(service)[method];
      if (!def) throw new Error(`CRI service ${service} has no method ${method}`);
      encode = (m) => def.responseSerialize(m);
    }
    return encode(message);
  };
}

/** A reply's `info` map: with verbose, `info` holds `record` as JSON (containerd's form), else none. */
export function verboseInfo(verbose: boolean, record: unknown): Record<string, string> {
  return verbose ? { info: JSON.stringify(record) } : {};
}

/**
 * A container's or pod's `info` map: with verbose, `info` holds berth's container and task, led by
 * the keys of containerd's that operators' recipes read (`crictl inspect -o go-template
 * --template '{{.info.pid}}'` to enter a container's namespaces): `sandboxID` (a container's
 * pod), `pid` (its process, 0 without a live one) and `runtimeSpec` (the OCI spec, moved there
 * from the container record so that it is not written twice).
 */
export function criVerboseInfo(verbose: boolean, info: ContainerInfo): Record<string, string> {
  if (!verbose) return {};
  const { spec, ...container } = info.container;
  const t = info.task;
  return verboseInfo(true, {
    ...(kindOf(info.container) === CriKind.container
      ? { sandboxID: info.container.labels[CriLabel.sandboxId] ?? '' }
      : {}),
    // A process that has exited keeps its pid in berth's record; containerd reports 0 then, so
    // that nobody enters the namespaces of whatever process reuses the pid.
    pid: t && (t.status === 'running' || t.status === 'paused') ? t.pid : 0,
    runtimeSpec: spec,
    ...info,
    container,
  });
}

/**
 * The wire form of one non-negative int64 (or uint64) field: its tag, then the value as a varint.
 * Cheaper than a proto-loader encode of a message holding only it (PodSandboxStatus's timestamp).
 */
export function varintField(field: number, value: bigint): Buffer {
  if (value < 0n) throw new RangeError(`field ${field}: ${value} is negative`);
  const bytes = [field << 3];
  let x = value;
  while (x >= 0x80n) {
    bytes.push(Number(x & 0x7fn) | 0x80);
    x >>= 7n;
  }
  bytes.push(Number(x));
  return Buffer.from(bytes);
}

interface Entry<R> {
  variant: string;
  parts: readonly unknown[];
  reply: R;
}

// Variants of one key kept at once (verbose or not, a few list filters).
const MAX_VARIANTS = 4;

/**
 * Replies built from immutable records, kept per record object: `get` returns the kept reply (with
 * its bytes) while the key, the variant and every part are the same objects as when it was made;
 * a record replaced by its owner is a new object, so its old reply is never returned again (and is
 * collected with it).
 */
export class ReplyMemo<K extends object, R extends object> {
  private readonly byKey = new WeakMap<K, Entry<R>[]>();

  constructor(private readonly encode: (reply: R) => Buffer) {}

  /** The reply for (key, variant, parts), made by `make` and encoded once when not kept. */
  get(key: K, variant: string, parts: readonly unknown[], make: () => R): R {
    let entries = this.byKey.get(key);
    const at = entries ? entries.findIndex((e) => e.variant === variant) : -1;
    const hit = at >= 0 ? entries?.[at] : undefined;
    if (hit && sameParts(hit.parts, parts)) return hit.reply;
    const reply = make();
    withEncoding(reply, this.encode(reply));
    const entry = { variant, parts: [...parts], reply };
    if (!entries) {
      entries = [];
      this.byKey.set(key, entries);
    }
    if (at >= 0) entries[at] = entry;
    else {
      if (entries.length >= MAX_VARIANTS) entries.shift();
      entries.push(entry);
    }
    return reply;
  }
}

function sameParts(a: readonly unknown[], b: readonly unknown[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
