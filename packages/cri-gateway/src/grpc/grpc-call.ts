import { BerthError, Code } from '@berth/api';
import { context, type TextMapGetter } from '@opentelemetry/api';
import type { HandlerDeps, StreamHandler, UnaryHandler } from '../handlers/index.js';
import { recordTail, timingOn } from './call-timing.js';
import { callDeadlines, type Deadline } from './deadlines.js';
import {
  grpcFrame,
  MAX_MESSAGE_BYTES,
  MESSAGE_PREFIX,
  parseTimeout,
  type RequestHead,
  sendErrorStatus,
  sendOkTrailers,
  sendResponseHeaders,
} from './grpc-wire.js';
import type { H2Stream, StreamEvents } from './h2-stream.js';
import type { HeaderField } from './hpack.js';
import { type ObservedCall, observeCall } from './observe.js';

/** One CRI method as berth's server runs it: its codec and its handler (none: UNIMPLEMENTED). */
export interface Route {
  /** "<Service>/<Method>", as handlers, metrics and logs name it. */
  rpc: string;
  deserialize(body: Buffer): unknown;
  serialize(message: unknown): Buffer;
  unary?: UnaryHandler;
  stream?: StreamHandler;
}

// Reads W3C trace context from the request's header fields (gRPC metadata are headers).
const headerGetter: TextMapGetter<readonly HeaderField[]> = {
  get: (fields, key) => fields.find((f) => f.name === key)?.value,
  keys: (fields) => fields.map((f) => f.name),
};

// setTimeout's largest delay; a longer grpc-timeout is as good as none (deadlines.ts).
const MAX_TIMER_MS = 0x7fff_ffff;

/**
 * One gRPC call on one HTTP/2 stream: gathers the single request message (unary and
 * server-streaming calls carry exactly one), runs the handler inside the call's span, and
 * answers. A deadline (grpc-timeout) or the client resetting the stream aborts the handler's
 * signal and settles the call; whatever the handler returns later is dropped.
 */
export class GrpcCall implements StreamEvents {
  private readonly chunks: Buffer[] = [];
  private size = 0;
  private expected = -1;
  private settled = false;
  private headersSent = false;
  private deadline: Deadline | undefined;
  private readonly abort = new AbortController();
  private obs: ObservedCall | undefined;

  constructor(
    private readonly stream: H2Stream,
    private readonly headers: readonly HeaderField[],
    private readonly head: RequestHead,
    private readonly route: Route,
    private readonly deps: HandlerDeps,
  ) {
    if (head.timeout !== undefined) {
      const ms = parseTimeout(head.timeout);
      if (ms === undefined) {
        this.fail(new BerthError(Code.INTERNAL, `malformed grpc-timeout "${head.timeout}"`));
        return;
      }
      if (ms <= MAX_TIMER_MS) this.deadline = callDeadlines.add(ms, () => this.expire(head.timeout ?? ''));
    }
    // The call is the stream's listener itself: no closures and object of its own per call.
    stream.events = this;
  }

  /** StreamEvents: the client reset the stream, or the connection went. */
  onAbort(reason: string): void {
    this.cancel(reason);
  }

  /** StreamEvents: DATA octets of the request. */
  onData(chunk: Buffer): void {
    if (this.settled) return;
    this.chunks.push(chunk);
    this.size += chunk.length;
    if (this.expected < 0 && this.size >= MESSAGE_PREFIX) {
      const head = this.chunks.length === 1 ? chunk : Buffer.concat(this.chunks);
      const length = head.readUInt32BE(1);
      if ((head[0] ?? 0) & 1) {
        // berth accepts only the identity encoding and says so in no grpc-accept-encoding.
        const enc = this.head.encoding;
        this.fail(
          enc && enc !== 'identity'
            ? new BerthError(
                Code.UNIMPLEMENTED,
                `grpc-encoding "${enc}" is not supported; send uncompressed messages`,
              )
            : new BerthError(Code.INTERNAL, 'compressed flag set on a message without a grpc-encoding'),
        );
        return;
      }
      if (length > MAX_MESSAGE_BYTES) {
        this.fail(
          new BerthError(
            Code.RESOURCE_EXHAUSTED,
            `CRI ${this.route.rpc} request of ${length} octets exceeds the limit of ${MAX_MESSAGE_BYTES}`,
          ),
        );
        return;
      }
      this.expected = MESSAGE_PREFIX + length;
    }
    if (this.expected >= 0 && this.size > this.expected) {
      this.fail(
        new BerthError(Code.INTERNAL, `CRI ${this.route.rpc} takes one request message; more were sent`),
      );
    }
  }

  /** StreamEvents: the client ended its side; the request is complete. */
  onEnd(): void {
    if (this.settled) return;
    if (this.expected < 0 || this.size < this.expected) {
      this.fail(new BerthError(Code.INTERNAL, `CRI ${this.route.rpc} request ended before its message did`));
      return;
    }
    const all = this.chunks.length === 1 ? (this.chunks[0] as Buffer) : Buffer.concat(this.chunks);
    let request: unknown;
    try {
      request = this.route.deserialize(all.subarray(MESSAGE_PREFIX));
    } catch (err) {
      this.fail(
        new BerthError(
          Code.INTERNAL,
          `CRI ${this.route.rpc} request could not be decoded: ${(err as Error).message}`,
        ),
      );
      return;
    }
    this.chunks.length = 0;
    if (timingOn && this.stream.marks) {
      this.stream.marks.decoded = process.hrtime.bigint();
      this.stream.marks.rpc = this.route.rpc;
    }
    this.obs = observeCall({
      rpc: this.route.rpc,
      request,
      carrier: this.headers,
      getter: headerGetter,
      deps: this.deps,
    });
    if (this.route.unary) this.runUnary(this.route.unary, request, this.obs);
    else if (this.route.stream) this.runStream(this.route.stream, request, this.obs);
    else
      this.fail(new BerthError(Code.UNIMPLEMENTED, `CRI ${this.route.rpc} is not implemented by berth yet`));
  }

  private runUnary(handler: UnaryHandler, request: unknown, obs: ObservedCall): void {
    let result: unknown;
    try {
      result = context.with(obs.context, handler, undefined, request, this.deps);
    } catch (err) {
      // Thrown before any promise: the call fails, not the connection.
      this.fail(err);
      return;
    }
    // A reply the handler had in memory is written now, in this turn, with no microtask between.
    if (!isThenable(result)) {
      this.answer(result, obs);
      return;
    }
    result.then(
      (reply) => this.answer(reply, obs),
      (raw: unknown) => {
        if (!this.settled) this.fail(raw);
      },
    );
  }

  /** Writes a unary call's reply (headers, message, trailers), then ends its bookkeeping. */
  private answer(reply: unknown, obs: ObservedCall): void {
    if (this.settled) return;
    if (timingOn && this.stream.marks) this.stream.marks.replied = process.hrtime.bigint();
    let body: Buffer;
    try {
      body = this.route.serialize(reply);
    } catch (err) {
      this.fail(
        new BerthError(
          Code.INTERNAL,
          `CRI ${this.route.rpc} reply could not be encoded: ${(err as Error).message}`,
        ),
      );
      return;
    }
    if (body.length > MAX_MESSAGE_BYTES) {
      this.fail(this.tooLarge(body.length));
      return;
    }
    this.settle();
    // Headers, message and trailers leave in one socket write, before the call's span,
    // metrics and access line are ended: the client does not wait for the bookkeeping.
    sendResponseHeaders(this.stream);
    this.stream.sendData(grpcFrame(body));
    sendOkTrailers(this.stream);
    this.stream.flush();
    if (timingOn) {
      const t = process.hrtime.bigint();
      obs.end();
      recordTail(this.route.rpc, t);
    } else obs.end();
  }

  private runStream(handler: StreamHandler, request: unknown, obs: ObservedCall): void {
    const stream = this.stream;
    // Headers go at once: a client waiting for the stream's headers sees it open before any event.
    sendResponseHeaders(stream);
    this.headersSent = true;
    const run = async () => {
      for await (const message of handler(request, this.deps, this.abort.signal)) {
        if (this.settled) return;
        const body = this.route.serialize(message);
        if (body.length > MAX_MESSAGE_BYTES) throw this.tooLarge(body.length);
        stream.sendData(grpcFrame(body));
        await stream.writable();
      }
    };
    context.with(obs.context, run).then(
      () => {
        if (this.settled) return;
        this.settle();
        obs.end();
        sendOkTrailers(stream);
      },
      (raw: unknown) => {
        if (!this.settled) this.fail(raw);
      },
    );
  }

  private tooLarge(length: number): BerthError {
    return new BerthError(
      Code.RESOURCE_EXHAUSTED,
      `CRI ${this.route.rpc} reply of ${length} octets exceeds the limit of ${MAX_MESSAGE_BYTES}`,
    );
  }

  /** Ends the call with an error status; the handler's signal is aborted. */
  private fail(raw: unknown): void {
    if (this.settled) return;
    this.settle();
    this.abort.abort();
    // A call that failed before its handler ran is still counted and logged.
    const obs =
      this.obs ??
      observeCall({
        rpc: this.route.rpc,
        request: undefined,
        carrier: this.headers,
        getter: headerGetter,
        deps: this.deps,
      });
    const err = obs.end(raw) ?? new BerthError(Code.INTERNAL, `CRI ${this.route.rpc} failed`);
    sendErrorStatus(this.stream, err, this.headersSent);
  }

  private expire(timeout: string): void {
    this.fail(
      new BerthError(Code.DEADLINE_EXCEEDED, `CRI ${this.route.rpc} exceeded its grpc-timeout of ${timeout}`),
    );
  }

  /** The client reset the stream (or the connection went): nothing can be sent any more. */
  private cancel(reason: string): void {
    if (this.settled) return;
    this.settle();
    this.abort.abort();
    this.obs?.end(new BerthError(Code.CANCELLED, `CRI ${this.route.rpc} cancelled: ${reason}`));
  }

  private settle(): void {
    this.settled = true;
    callDeadlines.clear(this.deadline);
  }
}

function isThenable(x: unknown): x is PromiseLike<unknown> {
  return typeof (x as PromiseLike<unknown> | null)?.then === 'function';
}
