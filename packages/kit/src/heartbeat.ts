// Liveness of long calls. A core NATS request has no notion of its callee: if the process serving
// it dies (SIGKILL, OOM, a lost connection) the caller learns nothing until its timeout, which for
// a pull or an unpack is half an hour. So a caller of a long operation asks for heartbeats: the
// callee sends an empty message with HEARTBEAT_HEADER on the request's reply subject every
// interval while its handler runs (the first after FIRST_BEAT_MS), and the caller fails with
// UNAVAILABLE when none arrived for HEARTBEAT_STALL_MS. The real reply never carries the header.
// Short operations keep their plain request and timeout. Under NATS authorization a service user
// must be allowed more than one message per reply subject: `allow_responses: { max: N }` with N
// above the beats of its longest call (a day-long `wait` at one a second is 86,401), since
// `allow_responses: true` allows one.
import { BerthError, Code } from '@berth/api';
import {
  Empty,
  ErrorCode,
  type Msg,
  type MsgHdrs,
  type NatsConnection,
  NatsError,
  headers as natsHeaders,
  type QueuedIterator,
  RequestStrategy,
} from 'nats';

/**
 * Header of heartbeats. On a request: the interval the caller asks for, in ms. On a heartbeat:
 * who sends it, as `<node>/<instance id>`.
 */
export const HEARTBEAT_HEADER = 'Berth-Heartbeat';
/** How often a callee sends a heartbeat unless the caller asks otherwise. */
export const HEARTBEAT_INTERVAL_MS = 1_000;
/** How long a caller waits without any heartbeat before it gives the callee up as lost. */
export const HEARTBEAT_STALL_MS = 5_000;

/** When a callee sends its first heartbeat, at most (see answerWithHeartbeats). */
export const FIRST_BEAT_MS = 100;

/** The bounds a callee keeps a requested interval within (a hostile caller cannot make it spin). */
const MIN_INTERVAL_MS = 100;
const MAX_INTERVAL_MS = 10_000;

/** How a request is answered once (the kit's answerer): ok with a body, or an error. */
export interface Answerer {
  ok(data: Uint8Array): void;
  error(err: BerthError): void;
}

/**
 * Starts heartbeats for one request when its caller asked for them (HEARTBEAT_HEADER), and returns
 * the answerer wrapped so that answering stops them first: no heartbeat follows the reply. `from`
 * names the callee (`<node>/<instance>`), so a caller's error can say which one went silent.
 */
export function answerWithHeartbeats<A extends Answerer>(
  answer: A,
  msg: Pick<Msg, 'headers' | 'reply' | 'respond'>,
  from: string,
  onSendError: (err: unknown) => void,
): A {
  const asked = msg.headers?.get(HEARTBEAT_HEADER);
  if (!asked || !msg.reply) return answer;
  const n = Number(asked);
  const interval = Number.isFinite(n)
    ? Math.min(MAX_INTERVAL_MS, Math.max(MIN_INTERVAL_MS, n))
    : HEARTBEAT_INTERVAL_MS;
  const h = natsHeaders();
  h.set(HEARTBEAT_HEADER, from);
  let stopped = false;
  const beat = () => {
    try {
      msg.respond(Empty, { headers: h });
    } catch (err) {
      // The connection is closing: the caller will notice the silence, which is the truth.
      stopped = true;
      clearInterval(timer);
      onSendError(err);
    }
  };
  // The first soon, not at once: a call answered within FIRST_BEAT_MS (a create or remove of a
  // container takes a few ms) sends no beat, one message and one wake-up of its caller fewer;
  // one that works longer tells its caller early which instance took it. A callee that dies
  // before its first beat is named by node (or as "the instance that took it").
  let timer: NodeJS.Timeout = setTimeout(
    () => {
      beat();
      if (stopped) return;
      timer = setInterval(beat, interval);
      timer.unref();
    },
    Math.min(FIRST_BEAT_MS, interval),
  );
  timer.unref();
  return {
    ...answer,
    ok(data: Uint8Array) {
      clearInterval(timer);
      answer.ok(data);
    },
    error(err: BerthError) {
      clearInterval(timer);
      answer.error(err);
    },
  };
}

/** True for a heartbeat (as opposed to the reply) on a watched request's reply subject. */
export function isHeartbeat(m: Msg): boolean {
  return m.data.length === 0 && (m.headers?.get(HEARTBEAT_HEADER) ?? '') !== '';
}

/** Options of a watched request. */
export interface WatchedRequestOptions {
  /** The whole call's bound: past it, the NATS timeout error, as a plain request gives. */
  timeoutMs: number;
  /** Request headers (HEARTBEAT_HEADER is added). */
  headers: MsgHdrs;
  /** Silence after which the callee counts as lost; default HEARTBEAT_STALL_MS. */
  stallMs?: number;
  /** The error for a lost callee: `from` is the last heartbeat's sender, if any came. */
  lost: (from: string | undefined, silentMs: number) => BerthError;
}

/**
 * Sends a request whose callee heartbeats while it works, and returns the reply. Throws what a
 * plain request throws (NatsError: no responders, timeout, connection closed) and, when the
 * heartbeats stop for `stallMs`, the `lost` error.
 */
export async function watchedRequest(
  nc: NatsConnection,
  subject: string,
  data: Uint8Array,
  o: WatchedRequestOptions,
): Promise<Msg> {
  const stallMs = o.stallMs ?? HEARTBEAT_STALL_MS;
  o.headers.set(HEARTBEAT_HEADER, String(HEARTBEAT_INTERVAL_MS));
  const replies = (await nc.requestMany(subject, data, {
    strategy: RequestStrategy.Timer,
    maxWait: o.timeoutMs,
    headers: o.headers,
  })) as QueuedIterator<Msg>;
  const it = replies[Symbol.asyncIterator]();
  const STALLED = Symbol('stalled');
  let timer: NodeJS.Timeout | undefined;
  let from: string | undefined;
  try {
    for (;;) {
      const stalled = new Promise<typeof STALLED>((resolve) => {
        timer = setTimeout(() => resolve(STALLED), stallMs);
      });
      const next = await Promise.race([it.next(), stalled]);
      clearTimeout(timer);
      if (next === STALLED) throw o.lost(from, stallMs);
      // The iterator ends without a reply only when maxWait passed.
      if (next.done) throw NatsError.errorForCode(ErrorCode.Timeout);
      if (isHeartbeat(next.value)) {
        from = next.value.headers?.get(HEARTBEAT_HEADER);
        continue;
      }
      return next.value;
    }
  } finally {
    clearTimeout(timer);
    // Ends the iterator: the request leaves the connection's reply mux and its maxWait timer goes.
    replies.stop();
  }
}

/** The UNAVAILABLE of a callee gone silent, naming service, operation and node (or instance). */
export function lostCallee(service: string, op: string, node: string | undefined) {
  return (from: string | undefined, silentMs: number): BerthError => {
    const who = from ? `instance ${from}` : node ? `node ${node}` : 'the instance that took it';
    return new BerthError(
      Code.UNAVAILABLE,
      `${service} (${who}) stopped answering "${op}": no heartbeat for ${silentMs} ms, so it died or lost NATS; retry once it is back`,
    );
  };
}
