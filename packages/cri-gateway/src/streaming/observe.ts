import type { Duplex } from 'node:stream';
import { serviceMeter } from '@berth/kit';
import { failSpan, redactArgs } from '@berth/kit/tracing';
import {
  type Attributes,
  type Context,
  type Counter,
  context,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  SpanStatusCode,
  trace,
  type UpDownCounter,
} from '@opentelemetry/api';
import type { CachedRequest } from './request-cache.js';
import type { StreamingBackend } from './types.js';

const tracer = trace.getTracer('berth.cri-gateway');

interface StreamingInstruments {
  sessions: Counter;
  active: UpDownCounter;
  bytes: Counter;
  errors: Counter;
}

let made: StreamingInstruments | undefined;

// Made on first use, after the process registered its MeterProvider (a module-level instrument
// would be a no-op one forever).
function instruments(): StreamingInstruments {
  if (made) return made;
  const m = serviceMeter('cri-gateway');
  made = {
    sessions: m.createCounter('berth.cri.streaming.sessions', {
      description: 'Streaming sessions (exec, attach, port-forward) opened, by kind',
      unit: '{session}',
    }),
    active: m.createUpDownCounter('berth.cri.streaming.sessions.active', {
      description: 'Streaming sessions open now, by kind',
      unit: '{session}',
    }),
    bytes: m.createCounter('berth.cri.streaming.bytes', {
      description: 'Bytes of streaming sessions on the wire (frames included), by kind and direction',
      unit: 'By',
    }),
    errors: m.createCounter('berth.cri.streaming.errors', {
      description:
        'Streaming failures, by kind and stage: upgrade (refused: unknown or used token, no protocol in common) or session (the runtime failed)',
      unit: '{error}',
    }),
  };
  // Every series exists from the start: a scrape before the first session shows zeros.
  for (const kind of ['exec', 'attach', 'portforward']) {
    made.sessions.add(0, { kind });
    made.active.add(0, { kind });
    made.bytes.add(0, { kind, direction: 'in' });
    made.bytes.add(0, { kind, direction: 'out' });
    made.errors.add(0, { kind, stage: 'session' });
  }
  return made;
}

/** Makes the streaming server's instruments (call once the process's MeterProvider is registered). */
export function startStreamingMetrics(): void {
  instruments();
}

/** The trace context of the CRI call that minted each URL, by its cached request. */
const origins = new WeakMap<CachedRequest, Context>();

/** Remembers the CRI call active now (Exec, Attach, PortForward) as the parent of the session. */
export function rememberOrigin(cached: CachedRequest): void {
  origins.set(cached, context.active());
}

/** Counts a refused upgrade: `kind` is unknown when the URL named no valid token. */
export function countRefused(kind: string | undefined): void {
  instruments().errors.add(1, { kind: kind ?? 'unknown', stage: 'upgrade' });
}

function requestAttributes(cached: CachedRequest): Attributes {
  if (cached.kind === 'portforward') {
    return { 'berth.pod.id': cached.request.podSandboxId, 'berth.stream.ports': cached.request.ports };
  }
  const r = cached.request;
  return {
    'berth.container.id': r.containerId,
    'berth.stream.tty': r.tty,
    'berth.stream.stdin': r.stdin,
    ...('cmd' in r ? { 'process.command_args': redactArgs(r.cmd) } : {}),
  };
}

/**
 * Observes one upgraded streaming session from its 101 to its socket's close: the session count
 * and the active gauge by kind, its bytes both ways, and a SERVER span `cri stream <kind>` that is
 * a child of the CRI call that minted the URL, so the exec's calls to the shim join that trace;
 * it ends when the connection has closed and the runtime's calls have settled.
 */
export class StreamSession {
  private readonly span: Span;
  private readonly ctx: Context;
  private readonly kind: string;
  private closed = false;
  private spanEnded = false;
  private pending = 0;
  private failed = false;

  constructor(
    cached: CachedRequest,
    socket: Duplex,
    o: { transport: string; protocol: string; head: Buffer },
  ) {
    this.kind = cached.kind;
    const i = instruments();
    const parent = origins.get(cached) ?? ROOT_CONTEXT;
    this.span = tracer.startSpan(
      `cri stream ${cached.kind}`,
      {
        kind: SpanKind.SERVER,
        attributes: {
          'berth.stream.kind': cached.kind,
          'berth.stream.transport': o.transport,
          'berth.stream.protocol': o.protocol,
          ...requestAttributes(cached),
        },
      },
      parent,
    );
    this.ctx = trace.setSpan(parent, this.span);
    const kind = { kind: cached.kind };
    i.sessions.add(1, kind);
    i.active.add(1, kind);
    const inbound = { kind: cached.kind, direction: 'in' };
    const outbound = { kind: cached.kind, direction: 'out' };
    if (o.head.length) i.bytes.add(o.head.length, inbound);
    socket.on('data', (chunk: Buffer) => i.bytes.add(chunk.length, inbound));
    // Counted as written, so a long session's counter moves while it lasts.
    const write = socket.write.bind(socket) as (...a: unknown[]) => boolean;
    socket.write = ((chunk: unknown, ...rest: unknown[]) => {
      const n = typeof chunk === 'string' ? Buffer.byteLength(chunk) : (chunk as Uint8Array).length;
      i.bytes.add(n, outbound);
      return write(chunk, ...rest);
    }) as Duplex['write'];
    socket.once('close', () => this.end());
  }

  /**
   * The backend, its calls run inside the session's span and their failures counted. The span
   * waits for the calls under way when the connection closes (a command the client left is
   * killed, and its exit code still lands on the span).
   */
  backend(b: StreamingBackend): StreamingBackend {
    const run = <T>(fn: () => Promise<T>): Promise<T> => {
      this.pending++;
      return context
        .with(this.ctx, fn)
        .catch((err: unknown) => {
          this.fail(err);
          throw err;
        })
        .finally(() => {
          this.pending--;
          this.finishSpan();
        });
    };
    return {
      exec: (req, io) => run(() => b.exec(req, io).then((r) => this.exited(r))),
      // An attach has no exit code (it ends with the output or a detach): none on its span.
      attach: (req, io) => run(() => b.attach(req, io)),
      portForward: (pod, port, stream, signal) => run(() => b.portForward(pod, port, stream, signal)),
    };
  }

  private exited<T extends { exitCode: number }>(r: T): T {
    this.span.setAttribute('process.exit.code', r.exitCode);
    return r;
  }

  private fail(err: unknown): void {
    this.failed = true;
    instruments().errors.add(1, { kind: this.kind, stage: 'session' });
    failSpan(this.span, err);
  }

  /** The connection closed: the active gauge goes down, and the span ends once no call is pending. */
  end(): void {
    if (this.closed) return;
    this.closed = true;
    instruments().active.add(-1, { kind: this.kind });
    this.finishSpan();
  }

  private finishSpan(): void {
    if (!this.closed || this.pending > 0 || this.spanEnded) return;
    this.spanEnded = true;
    // A failure already set ERROR; otherwise the session did what it was asked.
    if (!this.failed) this.span.setStatus({ code: SpanStatusCode.OK });
    this.span.end();
  }
}
