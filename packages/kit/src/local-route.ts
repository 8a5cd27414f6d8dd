// Routes that skip nats-server for a call to a service on the same node:
// - in process: a call whose subject a service of this same process serves (`berth up
//   --cohosted`) is handed to that service's request path directly (no socket at all);
// - over a unix socket (socket-route.ts): a call whose subject a service instance of this node
//   serves, from another process of the node, goes to that instance's socket under the run root.
// Everything but the transport stays as over NATS: the request and reply are the same encoded bytes
// and headers (so the namespace, the trace context, the callee's input check, its span, access line,
// metrics and in-flight tracking, and the caller's reply check all run), and a call is routed so
// only when the caller's principal may publish its subject (the same allow list nats-server
// enforces for its user), else it goes over NATS as before. Events, the CLI and other nodes always
// use NATS.
import { ErrorCode, type MsgHdrs, type NatsConnection, NatsError } from 'nats';
import { HEARTBEAT_STALL_MS } from './heartbeat.js';
import type { LocalMsg, LocalReply } from './route-msg.js';
import { errorHeaders, RouteClient, type RouteWatch, routesDirOk } from './socket-route.js';

export type { LocalMsg, LocalReply } from './route-msg.js';

/** Takes one request (a service's request path; it answers through the message). */
export type LocalDispatch = (msg: LocalMsg) => void;

let enabled = false;
/** Per subject, the dispatchers of the instances of this process that serve it. */
const routes = new Map<string, LocalDispatch[]>();
/** Round-robin position per subject, when several instances of this process serve it. */
const turn = new Map<string, number>();
/** Per service connection: whether its principal may publish a subject, and its socket routes. */
const callers = new WeakMap<
  NatsConnection,
  { allowed: (subject: string) => boolean; sockets: RouteClient | undefined }
>();

/** Turns in-process routing on for this process (a co-hosting process does, once, before its services start). */
export function enableLocalRoutes(): void {
  enabled = true;
}

/** Routes `subject` to `dispatch` while this instance serves it; returns the removal. */
export function addLocalRoute(subject: string, dispatch: LocalDispatch): () => void {
  const list = routes.get(subject) ?? [];
  list.push(dispatch);
  routes.set(subject, list);
  return () => {
    const now = routes.get(subject);
    if (!now) return;
    const rest = now.filter((d) => d !== dispatch);
    if (rest.length > 0) routes.set(subject, rest);
    else routes.delete(subject);
  };
}

/** A test of subjects against a NATS publish allow list (wildcards `*` and `>`). */
export function allowList(publishAllow: readonly string[]): (subject: string) => boolean {
  const patterns = publishAllow.map((p) => p.split('.'));
  return (subject) => {
    const tokens = subject.split('.');
    return patterns.some((p) => subjectMatches(p, tokens));
  };
}

/**
 * Says which subjects the principal behind `nc` may publish (its NATS user's publish allow list)
 * and, with `sockets`, where its node's services listen for same-node callers. A connection never
 * named here is never routed past NATS.
 */
export function setLocalCaller(
  nc: NatsConnection,
  allowed: (subject: string) => boolean,
  sockets?: { dir: string; principal: string; node: string },
): void {
  const client =
    sockets && routesDirOk(sockets.dir)
      ? new RouteClient(sockets.dir, sockets.principal, sockets.node)
      : undefined;
  callers.set(nc, { allowed, sockets: client });
  if (client) void nc.closed().then(() => client.close());
}

/** True when a NATS subject pattern (split on dots) matches a subject's tokens. */
export function subjectMatches(pattern: readonly string[], tokens: readonly string[]): boolean {
  for (let i = 0; i < pattern.length; i++) {
    const p = pattern[i];
    if (p === '>') return tokens.length > i;
    if (i >= tokens.length) return false;
    if (p !== '*' && p !== tokens[i]) return false;
  }
  return pattern.length === tokens.length;
}

/**
 * Sends a call past NATS when it can: to a service of this process serving `subject` (routing on),
 * else to a same-node instance's socket, if the caller may publish the subject and its
 * connection is open (a closed one fails the call over NATS, as it would have). Undefined: no
 * such route; a promise of undefined: the route did not take it (send it over NATS).
 */
export function localCall(
  nc: NatsConnection,
  subject: string,
  data: Uint8Array,
  headers: MsgHdrs,
  call: { timeoutMs: number; long: boolean; lost: RouteWatch['lost'] },
): Promise<LocalReply | undefined> | undefined {
  const caller = callers.get(nc);
  if (!caller || nc.isClosed() || !caller.allowed(subject)) return undefined;
  const list = enabled ? routes.get(subject) : undefined;
  if (list) {
    const n = turn.get(subject) ?? 0;
    turn.set(subject, (n + 1) % list.length);
    const dispatch = list[n % list.length] as LocalDispatch;
    return withinTimeout(localRequest(dispatch, subject, data, headers), call.timeoutMs);
  }
  // A long call is watched by its callee's heartbeats over the socket as over NATS: a frozen
  // callee keeps its socket open (one that dies closes it, which fails the call at once).
  const watch = call.long ? { stallMs: HEARTBEAT_STALL_MS, lost: call.lost } : undefined;
  return caller.sockets?.request({ subject, data, headers, timeoutMs: call.timeoutMs, watch });
}

/**
 * Fails as a publish over `nc` would for a message larger than its server's max_payload, counted
 * as nats.js and nats-server count it (the payload and its encoded headers): a request or reply
 * that goes past NATS must not work on one node and fail on another.
 */
export function refuseOverMaxPayload(nc: NatsConnection, data: Uint8Array, headers?: MsgHdrs): void {
  const max = nc.info?.max_payload;
  if (max === undefined) return;
  // nats.js's headers (natsHeaders()) encode themselves; MsgHdrs does not declare it.
  const encode = (headers as (MsgHdrs & { encode?: () => Uint8Array }) | undefined)?.encode;
  const size = data.length + (encode ? encode.call(headers).length : 0);
  if (size > max) throw new NatsError(ErrorCode.MaxPayloadExceeded, ErrorCode.MaxPayloadExceeded);
}

/** The reply, or the timeout error nats.js gives a request unanswered after `ms`. */
function withinTimeout<T>(reply: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new NatsError(ErrorCode.Timeout, ErrorCode.Timeout)), ms);
  });
  return Promise.race([reply, late]).finally(() => clearTimeout(timer));
}

/**
 * Hands one request to `dispatch` (from a microtask, as a publish leaves) and settles with its
 * answer: the first respond or respondError; later ones are refused as a second reply to a NATS
 * request is dropped by its caller.
 */
export function localRequest(
  dispatch: LocalDispatch,
  subject: string,
  data: Uint8Array,
  headers: MsgHdrs,
): Promise<LocalReply> {
  return new Promise((resolve) => {
    let answered = false;
    const settle = (reply: LocalReply): boolean => {
      if (answered) return false;
      answered = true;
      resolve(reply);
      return true;
    };
    const msg: LocalMsg = {
      subject,
      data,
      headers,
      reply: undefined,
      via: 'process',
      respond: (body) => settle({ data: body ?? new Uint8Array(0), headers: undefined }),
      respondError: (code, description, body) =>
        settle({ data: body ?? new Uint8Array(0), headers: errorHeaders(code, description) }),
    };
    queueMicrotask(() => dispatch(msg));
  });
}
