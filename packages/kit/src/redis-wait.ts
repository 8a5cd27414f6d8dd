import { BerthError, Code } from '@berth/api/errors';
import { exists, hasFlag } from '@ioredis/commands';
import { Command, type Redis } from 'ioredis';
import { type SentCommand as Cmd, onSendCommand, type SendBelow } from './redis-send-hook.js';

/** How many replicas must acknowledge each write, and how long a write waits for them. */
export interface ReplicaAcks {
  replicas: number;
  timeoutMs: number;
}

// Scripts and functions are not flagged `write` in the command table, but berth's scripts write.
const SCRIPTS = new Set(['eval', 'evalsha', 'fcall']);

/** Whether a command changes data (a command unknown to the table is taken to), so it waits. */
function isWrite(name: string): boolean {
  const n = name.toLowerCase();
  return SCRIPTS.has(n) || !exists(n) || hasFlag(n, 'write');
}

/**
 * Makes every write of a Redis client wait for `acks.replicas` replicas: right behind each
 * write command, EVAL/EVALSHA, or pipeline / MULTI...EXEC holding a write, it sends
 * `WAIT replicas timeoutMs` on the same connection, and the caller sees the write succeed only
 * once WAIT counts enough replicas. Otherwise the call fails with UNAVAILABLE naming the count;
 * the write may then exist on the primary (and be lost in a failover), so the caller retries.
 * A write error is passed on unchanged. Reads are sent as they were, with no WAIT.
 */
export function waitForReplicas(redis: Redis, acks: ReplicaAcks): void {
  // The socket and order in which a tracked command was last written: a WAIT only covers the
  // writes sent before it on its own connection (ioredis resends commands after a reconnect).
  let seq = 0;
  const written = new WeakMap<object, { socket: object; seq: number }>();
  const track = (c: Cmd) => {
    const toWritable = c.toWritable;
    c.toWritable = function (this: Cmd, socket: object) {
      written.set(c, { socket, seq: ++seq });
      return toWritable.call(this, socket);
    };
  };
  let collecting: Cmd[] | undefined;

  /** Sends WAIT now (so it follows the write on the connection) and checks its answer. */
  const ackAfter = (write: Cmd, what: string): Promise<void> => {
    const wait = new Command('wait', [acks.replicas, acks.timeoutMs]) as unknown as Cmd;
    track(wait);
    const unconfirmed = (why: string) =>
      new BerthError(
        Code.UNAVAILABLE,
        `Redis ${what} not confirmed by ${acks.replicas} replica(s) within ${acks.timeoutMs} ms ` +
          `(redisSentinel.replicaAcks): ${why}; the write may exist on the primary but could be ` +
          'lost in a failover, retry the operation',
      );
    return send(wait).then(
      (n) => {
        const w = written.get(write);
        const a = written.get(wait);
        if (!w || !a || w.socket !== a.socket || a.seq < w.seq) {
          throw unconfirmed('the connection to the primary changed before WAIT answered');
        }
        if (Number(n) < acks.replicas) throw unconfirmed(`${Number(n)} acknowledged`);
      },
      (err: Error) => {
        throw unconfirmed(`WAIT failed: ${err.message}`);
      },
    );
  };

  /** The write's own answer, given once the replicas confirmed it. */
  const gated = <T>(result: Promise<T>, ack: Promise<void>): Promise<T> => {
    // The write's error wins (a NOSCRIPT must reach ioredis unchanged); WAIT's is then moot.
    ack.catch(() => {});
    return result.then(async (v) => {
      await ack;
      return v;
    });
  };

  // WAIT goes through only the stages added before this one (none: connectRedis adds it first),
  // so the metrics and spans of the client never see it.
  const send: SendBelow = onSendCommand(redis, ({ command: c, pipelined, resent }, next) => {
    if (pipelined) collecting?.push(c);
    // A command ioredis resends after a reconnect was tracked (and WAITed for) when first sent.
    if (resent) return next();
    if (pipelined || !isWrite(c.name)) {
      if (pipelined) track(c);
      return next();
    }
    track(c);
    const result = next() as Promise<unknown>;
    return gated(result, ackAfter(c, c.name.toUpperCase()));
  });

  /** Gates a pipeline's exec() on a WAIT sent right behind its commands. */
  const gatePipeline = <P extends { exec: (...a: never[]) => Promise<unknown>; length: number }>(p: P): P => {
    if (typeof p?.exec !== 'function') {
      // multi({ pipeline: false }) sends MULTI on its own: its writes would each be followed by
      // a WAIT inside the transaction, which cannot confirm them.
      throw new BerthError(
        Code.UNIMPLEMENTED,
        'redisSentinel.replicaAcks: multi({ pipeline: false }) cannot be confirmed by WAIT; use multi()',
      );
    }
    const exec = p.exec;
    p.exec = function (this: P, ...args: never[]) {
      const batch: Cmd[] = [];
      collecting = batch;
      let result: Promise<unknown>;
      try {
        result = exec.apply(this, args);
      } finally {
        collecting = undefined;
      }
      const last = batch.at(-1);
      if (!last) {
        if (p.length === 0) return result;
        // ioredis sends a pipeline's commands within exec() outside cluster mode; should a
        // version send them later, failing beats answering a write no WAIT confirmed.
        result.catch(() => {});
        return Promise.reject(
          new BerthError(
            Code.UNIMPLEMENTED,
            'redisSentinel.replicaAcks: a pipeline whose commands ioredis sends after exec() returns cannot be confirmed by WAIT',
          ),
        );
      }
      if (!batch.some((c) => c.name !== 'multi' && c.name !== 'exec' && isWrite(c.name))) return result;
      const what = batch[0]?.name === 'multi' ? 'transaction' : 'pipeline';
      return gated(result, ackAfter(last, what));
    } as P['exec'];
    return p;
  };
  const { multi, pipeline } = redis;
  const gateOf =
    (make: (...a: unknown[]) => unknown) =>
    (...args: unknown[]) =>
      gatePipeline(make.apply(redis, args) as never);
  redis.multi = gateOf(multi as never) as unknown as Redis['multi'];
  redis.pipeline = gateOf(pipeline as never) as unknown as Redis['pipeline'];
}
