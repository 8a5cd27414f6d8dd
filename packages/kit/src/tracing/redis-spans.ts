import { createHash } from 'node:crypto';
import {
  type Attributes,
  type Context,
  context,
  isSpanContextValid,
  type Span,
  SpanKind,
  SpanStatusCode,
  trace,
} from '@opentelemetry/api';
import type { Redis } from 'ioredis';
import { type SentCommand as Cmd, onSendCommand } from '../redis-send-hook.js';

const tracer = trace.getTracer('berth.redis');

/** Script names by their Lua source: what a span calls a script instead of its sha1. */
const scriptNames = new Map<string, string>();

/**
 * Names a Lua script for the db spans of its EVALs (`EVAL record-exit`) and returns the source
 * unchanged, so a script constant is declared as `const X = redisScript('name', \`...\`)`.
 * Spans know a script by its source: two constants with the same source share the first name.
 */
export function redisScript(name: string, lua: string): string {
  if (!scriptNames.has(lua)) scriptNames.set(lua, name);
  return lua;
}

/** The name a script's spans carry: its registered name, or `sha1:` and 12 digits of its sha1. */
export function scriptNameOf(lua: string): string {
  const named = scriptNames.get(lua);
  if (named) return named;
  return `sha1:${createHash('sha1').update(lua).digest('hex').slice(0, 12)}`;
}

const MAX_TEXT = 1024;
const MAX_SUMMARY_OPS = 4;

const str = (v: unknown) => (typeof v === 'string' ? v : Buffer.isBuffer(v) ? v.toString('utf8') : '?');

/**
 * One command as db.query.text shows it: the command word, then its keys, then a `?` per other
 * argument. Values never appear (they may be payloads or secrets); an EVAL's script is replaced
 * by its name, which db.stored_procedure.name carries too.
 */
function commandText(c: Cmd): string {
  const word = c.name.toUpperCase();
  if (word === 'EVAL' || word === 'EVALSHA') {
    const n = Number(c.args[1] ?? 0);
    const keys = c.args.slice(2, 2 + n).map(str);
    const rest = Math.max(0, c.args.length - 2 - n);
    return [word, '?', String(n), ...keys, ...Array<string>(rest).fill('?')].join(' ');
  }
  let keys: string[] = [];
  try {
    keys = c.getKeys().map(str);
  } catch {
    // A command ioredis knows no key positions of: every argument is a placeholder then.
  }
  return [word, ...keys, ...Array<string>(Math.max(0, c.args.length - keys.length)).fill('?')].join(' ');
}

const cap = (s: string) => (s.length > MAX_TEXT ? `${s.slice(0, MAX_TEXT - 1)}…` : s);

/** The script an EVAL or EVALSHA runs, by name. */
function scriptOf(c: Cmd): string {
  const first = str(c.args[0]);
  return c.name === 'evalsha' ? `sha1:${first.slice(0, 12)}` : scriptNameOf(first);
}

/** The parent a db span joins: the caller's span, or none (work outside a traced operation). */
function parentContext(): Context | undefined {
  const ctx = context.active();
  const sc = trace.getSpanContext(ctx);
  return sc && isSpanContextValid(sc) ? ctx : undefined;
}

function endWhenSettled(span: Span, promises: Promise<unknown>[]): void {
  void Promise.allSettled(promises).then((results) => {
    const failed = results.find((r) => r.status === 'rejected');
    // EXEC answers an array whose failed commands are errors: the transaction failed in part.
    const partial = results.some(
      (r) => r.status === 'fulfilled' && Array.isArray(r.value) && r.value.some((v) => v instanceof Error),
    );
    if (failed) {
      const err = (failed as PromiseRejectedResult).reason as Error;
      span.setStatus({ code: SpanStatusCode.ERROR, message: err?.message ?? String(err) });
      span.recordException({ name: 'RedisError', message: err?.message ?? String(err) });
    } else if (partial) {
      span.setStatus({ code: SpanStatusCode.ERROR, message: 'a command of the transaction failed' });
    } else span.setStatus({ code: SpanStatusCode.OK });
    span.end();
  });
}

/** The commands of one pipeline `exec()`, gathered while ioredis sends them in one loop. */
interface Batch {
  span: Span;
  commands: Cmd[];
}

/**
 * Makes OpenTelemetry db CLIENT spans of a Redis client's multi-key work, each a child of the
 * operation that asked for it: one per EVAL/EVALSHA (`EVAL <script>`), one per MULTI/EXEC
 * transaction (`MULTI HSET DEL`) and one per pipeline (`BATCH HGETALL`). They follow the
 * OpenTelemetry database conventions: db.system(.name)=redis, db.operation(.name), db.query.text
 * with keys but never values (a `?` per argument), db.query.summary, db.namespace, server.*.
 * Single commands make no span (berth_redis_command_duration_seconds times them), nor does
 * anything sent outside a traced operation (heartbeats, lock renewals), so background work does
 * not fill the span store with traces of its own.
 */
export function traceRedis(redis: Redis): void {
  const o = redis.options;
  const server: Attributes = o.path
    ? { 'server.address': o.path, 'network.transport': 'unix' }
    : { 'server.address': o.host ?? 'localhost', 'server.port': o.port ?? 6379 };
  const base: Attributes = {
    'db.system': 'redis',
    'db.system.name': 'redis',
    'db.namespace': String(o.db ?? 0),
    ...server,
  };
  const batches = new WeakMap<object, Batch>();
  // A command ioredis resends after a reconnect already has its span.
  onSendCommand(redis, ({ command: c, stream, pipelined, resent }, next) => {
    const parent = resent ? undefined : parentContext();
    if (parent && pipelined && stream) {
      let b = batches.get(stream);
      if (!b) {
        const batch: Batch = {
          span: tracer.startSpan('BATCH', { kind: SpanKind.CLIENT, attributes: base }, parent),
          commands: [],
        };
        b = batch;
        batches.set(stream, batch);
        // ioredis sends a pipeline's commands in one synchronous loop: all are known after it.
        queueMicrotask(() => describeBatch(batch));
      }
      b.commands.push(c);
    } else if (parent && (c.name === 'eval' || c.name === 'evalsha')) {
      const script = scriptOf(c);
      const word = c.name.toUpperCase();
      const span = tracer.startSpan(
        `${word} ${script}`,
        {
          kind: SpanKind.CLIENT,
          attributes: {
            ...base,
            'db.operation': word,
            'db.operation.name': word,
            'db.stored_procedure.name': script,
            'db.query.summary': `${word} ${script}`,
            'db.query.text': cap(commandText(c)),
          },
        },
        parent,
      );
      endWhenSettled(span, [c.promise]);
    }
    return next();
  });
}

/** Names a pipeline's span after its commands and ends it when every reply is in. */
function describeBatch(b: Batch): void {
  const multi = b.commands[0]?.name === 'multi';
  const inner = b.commands.filter((c) => c.name !== 'multi' && c.name !== 'exec');
  const ops = [...new Set(inner.map((c) => c.name.toUpperCase()))];
  const op = multi ? 'MULTI' : 'BATCH';
  const shown = ops.length > MAX_SUMMARY_OPS ? [...ops.slice(0, MAX_SUMMARY_OPS), '…'] : ops;
  const summary = [op, ...shown].join(' ');
  b.span.updateName(summary);
  b.span.setAttributes({
    'db.operation': op,
    'db.operation.name': op,
    'db.operation.batch.size': inner.length,
    'db.query.summary': summary,
    'db.query.text': cap(b.commands.map(commandText).join('; ')),
  });
  endWhenSettled(
    b.span,
    b.commands.map((c) => c.promise),
  );
}
