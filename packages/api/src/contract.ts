// The one definition of each service: its name, scope and, per operation, input and output schemas,
// timeout, description and event topic. The kit derives the server (input parsed, handler typed by
// the output) and the client (replies validated) from it; nothing else lists operations.

import { InfoReply } from './health.js';
import * as z from './lazy-zod.js';
import type { Service } from './subjects.js';

/** Where a service's state lives: on one node (subjects and keys carry the node) or cluster-wide. */
export const Scope = { host: 'host', cluster: 'cluster' } as const;
export type Scope = (typeof Scope)[keyof typeof Scope];

/** One operation of a service. */
export interface OpDef<I extends z.ZodType = z.ZodType, O extends z.ZodType = z.ZodType> {
  readonly input: I;
  readonly output: O;
  /** How long a client waits for the reply by default, in ms. */
  readonly timeoutMs: number;
  /** One line on what the operation does (NATS Service API metadata, docs). */
  readonly description: string;
  /**
   * Event topic the operation streams progress or output on while it runs, with `{field}` standing
   * for a field of its input (e.g. `images.pull.progress.{pullId}`).
   */
  readonly events?: string;
  /**
   * Whether the callee sends heartbeats while a call runs, so that a caller notices a callee that
   * died (or lost NATS) within seconds rather than at timeoutMs. Default: on for long operations,
   * those whose timeoutMs is LONG_OP_MS or more (see isLongOp).
   */
  readonly heartbeat?: boolean;
}

/** The timeout from which an operation counts as long: its calls are watched by heartbeats. */
export const LONG_OP_MS = 60_000;

/** True when calls of the operation are watched by heartbeats (OpDef.heartbeat, else a long timeout). */
export function isLongOp(def: OpDef): boolean {
  return def.heartbeat ?? def.timeoutMs >= LONG_OP_MS;
}

/** Declares an operation; the generics keep its schemas' exact types. */
export function op<I extends z.ZodType, O extends z.ZodType>(def: OpDef<I, O>): OpDef<I, O> {
  return def;
}

/** `info` takes an empty object but tolerates extra fields from newer clients. */
const InfoRequestLoose = z.object({}).passthrough();

/** The operation every service answers (the kit serves it): who answered, where, healthy or not. */
export const infoOp = op({
  input: InfoRequestLoose,
  output: InfoReply,
  timeoutMs: 5_000,
  description: 'version, node, pid, uptime and health checks of the answering instance',
});

/** A service: its NATS name, scope and operations (`info` included). */
export interface ServiceDef<Ops extends Record<string, OpDef> = Record<string, OpDef>> {
  readonly name: Service;
  readonly scope: Scope;
  readonly ops: Ops & { readonly info: typeof infoOp };
}

/** Declares a service; `info` is added to its operations. */
export function defineService<const Ops extends Record<string, OpDef>>(def: {
  name: Service;
  scope: Scope;
  ops: Ops;
}): ServiceDef<Ops> {
  return { name: def.name, scope: def.scope, ops: { ...def.ops, info: infoOp } };
}

/** Names of a service's operations. */
export type OpName<S extends ServiceDef> = keyof S['ops'] & string;
/** What a caller passes to an operation (fields with defaults are optional). */
export type InputOf<S extends ServiceDef, K extends OpName<S>> = z.input<S['ops'][K]['input']>;
/** What a handler receives: the input after parsing (defaults filled). */
export type ParsedInputOf<S extends ServiceDef, K extends OpName<S>> = z.output<S['ops'][K]['input']>;
/** What a caller gets back: the reply after validation. */
export type OutputOf<S extends ServiceDef, K extends OpName<S>> = z.output<S['ops'][K]['output']>;
/** What a handler may return (fields with defaults may be left out). */
export type ReplyOf<S extends ServiceDef, K extends OpName<S>> = z.input<S['ops'][K]['output']>;

/** An empty reply (`{}`), for operations that only succeed or fail. */
export const Empty = z.object({});
export type Empty = z.infer<typeof Empty>;

/**
 * The event topic of one call of an operation with an `events` pattern: `{field}` replaced by the
 * input's field (which must be set).
 */
export function eventTopicOf(def: OpDef, input: Record<string, unknown>): string | undefined {
  if (!def.events) return undefined;
  return def.events.replace(/\{(\w+)\}/g, (_, f: string) => {
    const v = input[f];
    if (typeof v !== 'string' || v === '') throw new Error(`event topic needs input field "${f}"`);
    return v;
  });
}
