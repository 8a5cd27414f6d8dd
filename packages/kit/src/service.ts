import { randomUUID } from 'node:crypto';
import {
  BerthError,
  Code,
  DEFAULT_NAMESPACE,
  Header,
  type InfoReply,
  NAMESPACE_PATTERN,
  NAMESPACE_RULE,
  natsCodeOf,
  type OpDef,
  type OpName,
  type ParsedInputOf,
  type ReplyOf,
  type ServiceDef,
  subjectOf,
  toBerthError,
} from '@berth/api';
import { context, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import {
  JSONCodec,
  type MsgHdrs,
  type NatsConnection,
  type Service as NatsService,
  type ServiceMsg,
} from 'nats';
import type { Logger } from 'pino';
import { describeIssue, invalidInput } from './client.js';
import { storeRefusal } from './disk.js';
import { answerWithHeartbeats } from './heartbeat.js';
import { addLocalRoute, type LocalMsg, refuseOverMaxPayload } from './local-route.js';
import { RequestTracker } from './metrics/requests.js';
import { oneLine } from './one-line.js';
import { settleWithin } from './settle.js';
import { listenRoutes, routeOf } from './socket-route.js';
import { extractTrace } from './telemetry.js';
import { objectAttributes, rpcAttributes } from './tracing/rpc.js';

const json = JSONCodec<unknown>();

/** What a handler knows about the request beyond its validated input. */
export interface RequestContext {
  namespace: string;
  headers: MsgHdrs | undefined;
  log: Logger;
  /** Aborted when the service is shutting down past its grace period. */
  signal: AbortSignal;
}

/** The handler of one operation: parsed input in, a reply of the operation's output schema out. */
export type Handler<S extends ServiceDef, K extends OpName<S>> = (
  input: ParsedInputOf<S, K>,
  ctx: RequestContext,
) => Promise<ReplyOf<S, K>>;

/** A handler for every operation of a service (the kit answers `info` itself). */
export type Handlers<S extends ServiceDef> = { [K in Exclude<OpName<S>, 'info'>]: Handler<S, K> };

/** Answers one request exactly once: from its handler or, past the grace period, from stop(). */
interface Answer {
  op: string;
  ok(data: Uint8Array): void;
  error(err: BerthError): void;
}

/** A registered service: stop() quits taking requests and waits (bounded) for in-flight ones. */
export interface ServedService {
  readonly instanceId: string;
  inflight(): number;
  stop(graceMs: number): Promise<void>;
}

export interface ServeOptions<S extends ServiceDef> {
  nc: NatsConnection;
  service: S;
  version: string;
  node: string;
  log: Logger;
  handlers: Handlers<S>;
  /** Extra health checks reported by `info`; each returns "ok" or a problem. */
  checks?: () => Promise<Record<string, string>>;
  /**
   * Check every reply against the operation's output schema before sending it (a mismatch becomes
   * INTERNAL naming the operation). Default: on under vitest or with BERTH_CHECK_REPLIES=1, since
   * clients validate what they receive anyway.
   */
  checkReplies?: boolean;
  /** Extra `$SRV` metadata of this instance (e.g. where its metrics are scraped). */
  metadata?: Record<string, string>;
  /** This replica's id (the telemetry resource's service.instance.id); default: a new UUID. */
  instanceId?: string;
  /**
   * Also answer the node's other processes on a unix socket in `dir` (socket-route.ts), taking
   * from each connection only what `permit` says its principal may publish.
   */
  routes?: { dir: string; permit(principal: string): ((subject: string) => boolean) | undefined };
}

type AnyHandler = (input: unknown, ctx: RequestContext) => Promise<unknown>;

/** A request as the service reads and answers it: from NATS, or from a service of this process. */
type RequestMsg = ServiceMsg | LocalMsg;

/**
 * Settles once what was published before it has been handed to the socket: nats.js writes its
 * pending publishes (a reply, events) from a microtask queued by the first of them, and a microtask
 * queued later runs after it. Code after an answer that awaits this first no longer holds up the
 * answer's write for as long as it runs (a span's end and a synchronous access-log write:
 * 0.1-0.3 ms per request on a 2-core machine).
 */
function replyWritten(): Promise<void> {
  return new Promise((resolve) => queueMicrotask(resolve));
}

/**
 * Registers every endpoint with the NATS Service API, in a queue group named after the service, and
 * adds the `info` endpoint. Each handler is awaited, its input validated, and it always answers.
 */
export async function serve<S extends ServiceDef>(opts: ServeOptions<S>): Promise<ServedService> {
  const { nc, node, log } = opts;
  const service = opts.service.name;
  const checkReplies =
    opts.checkReplies ?? (process.env.VITEST !== undefined || process.env.BERTH_CHECK_REPLIES === '1');
  const instanceId = opts.instanceId ?? randomUUID();
  const startedAt = new Date();
  // Each request in flight, with how to answer it once (the handler or, past the grace period, stop()).
  const inflight = new Map<Promise<void>, Answer>();
  const abort = new AbortController();
  const tracer = trace.getTracer(`berth.${service}`);
  // Times each request from arrival to answer, for $SRV.STATS and the metrics.
  const requests = new RequestTracker(service);
  const unroute: (() => void)[] = [];
  /** The request path of each subject served, for same-node callers. */
  const takes = new Map<string, (msg: RequestMsg) => void>();

  const svc: NatsService = await nc.services.add({
    name: service,
    version: opts.version,
    description: `berth ${service}`,
    queue: service,
    metadata: { ...opts.metadata, node, instance: instanceId, pid: String(process.pid) },
    statsHandler: requests.stats.statsHandler,
  });

  const info: AnyHandler = async (): Promise<InfoReply> => {
    const checks = { nats: 'ok', ...(opts.checks ? await opts.checks() : {}) };
    return {
      service,
      version: opts.version,
      node,
      pid: process.pid,
      instanceId,
      startedAt: startedAt.toISOString(),
      uptimeSeconds: (Date.now() - startedAt.getTime()) / 1000,
      healthy: Object.values(checks).every((v) => v === 'ok'),
      checks,
    };
  };

  const handlers = opts.handlers as unknown as Record<string, AnyHandler>;
  for (const [op, def] of Object.entries(opts.service.ops) as [string, OpDef][]) {
    const handler = op === 'info' ? info : handlers[op];
    if (!handler) throw new Error(`${service}: no handler for operation "${op}"`);
    const subject = subjectOf(opts.service, op, node);
    requests.add(op, subject);
    const take = (msg: RequestMsg) => {
      // Callers of long operations ask for heartbeats while the handler runs (heartbeat.ts).
      const answer = answerWithHeartbeats(answerOnce(op, msg), msg, `${node}/${instanceId}`, (e) =>
        log.debug({ err: e, op }, 'could not send a heartbeat'),
      );
      const p = handle(op, def, handler, msg, answer).finally(() => inflight.delete(p));
      inflight.set(p, answer);
    };
    svc.addEndpoint(op, {
      subject,
      queue: service,
      metadata: { description: def.description },
      handler: (err, msg) => {
        if (err) {
          log.error({ err, op }, 'endpoint subscription failed');
          return;
        }
        take(msg);
      },
    });
    // The services co-hosted in this process call this one in process (local-route.ts).
    unroute.push(addLocalRoute(subject, take));
    takes.set(subject, take);
  }
  const routes = opts.routes;
  const socket = routes
    ? await listenRoutes({
        dir: routes.dir,
        token: routeOf(subjectOf(opts.service, 'info', node))?.token ?? service,
        take: (subject) => takes.get(subject),
        permit: routes.permit,
        warn: (msg, err) => log.warn({ err }, msg),
      }).catch((err: unknown) => {
        log.warn({ err }, 'same-node routes off: could not listen');
        return undefined;
      })
    : undefined;
  // SUBs are written lazily; a round trip guarantees the server has them, so a caller acting on
  // "ready" never meets no-responders.
  await nc.flush();

  function answerOnce(op: string, msg: RequestMsg): Answer {
    let answered = false;
    const finish = requests.begin(op);
    // Sending can throw (connection closed, reply over max_payload): log it rather than let it
    // become an unhandled rejection that takes the whole process down.
    const error = (err: BerthError) => {
      if (answered) return;
      answered = true;
      finish(err);
      try {
        // A NATS header value cannot hold CR or LF (the server refuses the whole reply): the header
        // carries a one-line description, the body the message exactly.
        msg.respondError(natsCodeOf[err.code], oneLine(err.message), json.encode({ error: err.toWire() }));
      } catch (sendErr) {
        log.warn({ err: sendErr, op }, 'could not send error reply');
      }
    };
    const ok = (data: Uint8Array) => {
      if (answered) return;
      try {
        // A reply NATS would refuse is refused past NATS too: a call must not work on one node
        // and fail on another.
        if ('via' in msg) refuseOverMaxPayload(nc, data);
        msg.respond(data);
        answered = true;
        finish();
      } catch (sendErr) {
        log.warn({ err: sendErr, op }, 'could not send reply');
        error(
          new BerthError(
            Code.INTERNAL,
            `${service} ${op}: could not send the reply: ${(sendErr as Error).message}`,
          ),
        );
      }
    };
    return { op, ok, error };
  }

  async function handle(
    op: string,
    def: OpDef,
    handler: AnyHandler,
    msg: RequestMsg,
    answer: Answer,
  ): Promise<void> {
    const parent = extractTrace(msg.headers);
    const namespace = msg.headers?.get(Header.namespace) || DEFAULT_NAMESPACE;
    const span = tracer.startSpan(
      `${service}/${op}`,
      {
        kind: SpanKind.SERVER,
        attributes: rpcAttributes({ service, op, subject: msg.subject, namespace, node }),
      },
      parent,
    );
    const reqLog = log.child({ op, ns: namespace });
    const started = performance.now();
    let outcome = 'OK';
    await context.with(trace.setSpan(parent, span), async () => {
      try {
        // Namespaces become Redis key parts and directory names: only names, never paths.
        if (!NAMESPACE_PATTERN.test(namespace)) {
          throw new BerthError(
            Code.INVALID_ARGUMENT,
            `${service} ${op}: invalid namespace ${JSON.stringify(namespace)}: ${NAMESPACE_RULE}`,
          );
        }
        let body: unknown = {};
        if (msg.data.length > 0) {
          try {
            body = json.decode(msg.data);
          } catch {
            throw new BerthError(Code.INVALID_ARGUMENT, `${service} ${op}: request body is not valid JSON`);
          }
        }
        const parsed = def.input.safeParse(body);
        if (!parsed.success) throw invalidInput(service, op, parsed.error);
        span.setAttributes(objectAttributes(service, parsed.data));
        const out = await handler(parsed.data, {
          namespace,
          headers: msg.headers,
          log: reqLog,
          signal: abort.signal,
        });
        if (checkReplies) {
          const checked = def.output.safeParse(out ?? {});
          if (!checked.success) {
            throw new BerthError(
              Code.INTERNAL,
              `${service} ${op}: the reply does not match its contract: ${describeIssue(checked.error)}`,
            );
          }
        }
        answer.ok(json.encode(out ?? {}));
        span.setStatus({ code: SpanStatusCode.OK });
      } catch (raw) {
        const err = toBerthError(storeRefusal(raw) ?? raw);
        outcome = err.code;
        if (err.code === Code.INTERNAL) reqLog.error({ err: raw }, 'request failed');
        else reqLog.info({ code: err.code, reason: err.message }, 'request refused');
        span.setStatus({ code: SpanStatusCode.ERROR, message: err.message });
        span.setAttribute('berth.error_code', err.code);
        span.recordException({ name: err.code, message: err.message });
        answer.error(err);
      } finally {
        // The answer leaves first: its span's end and the access line (a synchronous write to the
        // log) wait for it, so the caller does not wait for them.
        await replyWritten();
        span.end();
        accessLog(reqLog, op, outcome, started, 'via' in msg ? msg.via : undefined);
      }
    });
  }

  /**
   * The access log: one line per request, health probes (`info`) only at debug; a request that
   * did not come over NATS says how (`via`: "process" or "socket").
   */
  function accessLog(
    reqLog: Logger,
    op: string,
    outcome: string,
    started: number,
    via: string | undefined,
  ): void {
    // service, node and pid come from the logger's base fields: never repeated in a line.
    const ms = Math.round((performance.now() - started) * 10) / 10;
    const line = via ? { outcome, ms, via } : { outcome, ms };
    if (op === 'info') reqLog.debug(line, 'request');
    else reqLog.info(line, 'request');
  }

  return {
    instanceId,
    inflight: () => inflight.size,
    async stop(graceMs: number) {
      for (const remove of unroute.splice(0)) remove();
      socket?.stopTaking();
      await svc.stop().catch(() => undefined);
      if (inflight.size > 0) {
        log.info({ inflight: inflight.size }, 'waiting for in-flight requests');
        await settleWithin([...inflight.keys()], graceMs);
        if (inflight.size > 0) {
          log.warn({ inflight: inflight.size }, 'grace period over; aborting in-flight requests');
          abort.abort();
          // Callers get a definite answer now rather than waiting out their own timeouts.
          for (const answer of inflight.values()) {
            answer.error(
              new BerthError(
                Code.UNAVAILABLE,
                `${service} is shutting down: "${answer.op}" did not finish within the ${graceMs} ms grace period`,
              ),
            );
          }
        }
      }
      socket?.close();
    },
  };
}
