import { AsyncLocalStorage } from 'node:async_hooks';
import {
  type Attributes,
  type AttributeValue,
  type Context,
  type ContextManager,
  createContextKey,
  type Exception,
  type Link,
  ROOT_CONTEXT,
  type Span,
  type SpanContext,
  SpanKind,
  type SpanOptions,
  type SpanStatus,
  SpanStatusCode,
  type TimeInput,
  TraceFlags,
  type Tracer,
  type TracerProvider,
  trace,
} from '@opentelemetry/api';
import { type SpanRecord, type StoredValue, storedAttributes } from './span-record.js';
import { newSpanId, newTraceId } from './traceparent.js';

/**
 * A recording tracer for short-lived processes (every CLI command): spans get real ids, nest
 * through an AsyncLocalStorage context, and end up as SpanRecords in memory, without the ~150 ms
 * of loading the OpenTelemetry SDK and its exporter. What to do with the records (the span store,
 * an OTLP export) is the caller's business once the command is over.
 */
export class LiteTracerProvider implements TracerProvider {
  /** Where spans started from now on end up; swapped, not re-registered, for a new command. */
  sink: SpanSink;

  constructor(sink: SpanSink) {
    this.sink = sink;
  }

  getTracer(name: string): Tracer {
    return new LiteTracer(this, name);
  }
}

/**
 * The context key of a command's own sink: spans started under a context holding one (its root
 * span's, see startCliTelemetry) end up there, so commands running at once in one process (those
 * the `berth up` supervisor serves) keep their spans apart. Spans started outside any go to the
 * provider's sink.
 */
export const SPAN_SINK_KEY = createContextKey('berth.span-sink');

/** The finished spans of one command, and the process they are recorded for. */
export interface SpanSink {
  service: string;
  instance: string;
  finished: SpanRecord[];
}

/** The epoch time in microseconds, at sub-millisecond resolution. */
function nowUs(): number {
  return Math.round((performance.timeOrigin + performance.now()) * 1000);
}

function toUs(t: TimeInput | undefined): number {
  if (t === undefined) return nowUs();
  if (typeof t === 'number') {
    // The API passes epoch ms or, from performance.now(), ms since the time origin.
    return Math.round((t < 1e12 ? performance.timeOrigin + t : t) * 1000);
  }
  if (t instanceof Date) return t.getTime() * 1000;
  return t[0] * 1e6 + Math.round(t[1] / 1e3);
}

class LiteTracer implements Tracer {
  constructor(
    private readonly provider: LiteTracerProvider,
    private readonly scope: string,
  ) {}

  startSpan(name: string, options: SpanOptions = {}, ctx: Context = activeContext()): Span {
    const parent = options.root ? undefined : trace.getSpanContext(ctx);
    const sc: SpanContext = {
      traceId: parent?.traceId ?? newTraceId(),
      spanId: newSpanId(),
      traceFlags: TraceFlags.SAMPLED,
    };
    if (parent?.traceState) sc.traceState = parent.traceState;
    const sink = (ctx.getValue(SPAN_SINK_KEY) as SpanSink | undefined) ?? this.provider.sink;
    return new LiteSpan(sink, this.scope, sc, name, options, parent?.spanId ?? '');
  }

  startActiveSpan<F extends (span: Span) => unknown>(name: string, ...rest: unknown[]): ReturnType<F> {
    const fn = rest.pop() as F;
    const [options, ctx] = rest as [SpanOptions | undefined, Context | undefined];
    const parentCtx = ctx ?? activeContext();
    const span = this.startSpan(name, options, parentCtx);
    return activeManager.with(trace.setSpan(parentCtx, span), () => fn(span)) as ReturnType<F>;
  }
}

class LiteSpan implements Span {
  private readonly rec: SpanRecord;
  private readonly sink: SpanSink;
  private ended = false;

  constructor(
    sink: SpanSink,
    scope: string,
    private readonly sc: SpanContext,
    name: string,
    options: SpanOptions,
    parentSpanId: string,
  ) {
    this.sink = sink;
    this.rec = {
      traceId: sc.traceId,
      spanId: sc.spanId,
      parentSpanId,
      name,
      kind: options.kind ?? SpanKind.INTERNAL,
      service: this.sink.service,
      instance: this.sink.instance,
      scope,
      startUs: toUs(options.startTime),
      endUs: 0,
      status: { code: SpanStatusCode.UNSET },
      attributes: storedAttributes(options.attributes),
      events: [],
      links: (options.links ?? []).map(linkRecord),
    };
  }

  spanContext(): SpanContext {
    return this.sc;
  }

  setAttribute(key: string, value: AttributeValue): this {
    if (!this.ended) Object.assign(this.rec.attributes, storedAttributes({ [key]: value }));
    return this;
  }

  setAttributes(attributes: Attributes): this {
    if (!this.ended) Object.assign(this.rec.attributes, storedAttributes(attributes));
    return this;
  }

  addEvent(name: string, attrsOrTime?: Attributes | TimeInput, time?: TimeInput): this {
    if (this.ended) return this;
    const isTime =
      typeof attrsOrTime === 'number' || attrsOrTime instanceof Date || Array.isArray(attrsOrTime);
    const attributes = isTime ? undefined : (attrsOrTime as Attributes | undefined);
    const ev: SpanRecord['events'][number] = {
      name,
      timeUs: toUs(isTime ? (attrsOrTime as TimeInput) : time),
    };
    if (attributes) ev.attributes = storedAttributes(attributes);
    this.rec.events.push(ev);
    return this;
  }

  addLink(link: Link): this {
    if (!this.ended) this.rec.links.push(linkRecord(link));
    return this;
  }

  addLinks(links: Link[]): this {
    for (const l of links) this.addLink(l);
    return this;
  }

  setStatus(status: SpanStatus): this {
    if (this.ended) return this;
    this.rec.status = status.message ? { code: status.code, message: status.message } : { code: status.code };
    return this;
  }

  updateName(name: string): this {
    if (!this.ended) this.rec.name = name;
    return this;
  }

  end(endTime?: TimeInput): void {
    if (this.ended) return;
    this.ended = true;
    this.rec.endUs = Math.max(toUs(endTime), this.rec.startUs);
    this.sink.finished.push(this.rec);
  }

  isRecording(): boolean {
    return !this.ended;
  }

  recordException(exception: Exception, time?: TimeInput): void {
    const attrs: Record<string, StoredValue> = {};
    if (typeof exception === 'string') attrs['exception.message'] = exception;
    else {
      const e = exception as { name?: string; message?: string; code?: string | number };
      if (e.name) attrs['exception.type'] = e.name;
      if (e.code !== undefined) attrs['exception.type'] = String(e.code);
      if (e.message) attrs['exception.message'] = e.message;
    }
    this.addEvent('exception', attrs as Attributes, time);
  }
}

function linkRecord(l: Link): SpanRecord['links'][number] {
  const out: SpanRecord['links'][number] = { traceId: l.context.traceId, spanId: l.context.spanId };
  if (l.attributes) out.attributes = storedAttributes(l.attributes);
  return out;
}

/** The API's context manager on AsyncLocalStorage: the active span follows awaits and callbacks. */
class StorageContextManager implements ContextManager {
  private storage = new AsyncLocalStorage<Context>();

  active(): Context {
    return this.storage.getStore() ?? ROOT_CONTEXT;
  }

  with<A extends unknown[], F extends (...args: A) => ReturnType<F>>(
    ctx: Context,
    fn: F,
    thisArg?: ThisParameterType<F>,
    ...args: A
  ): ReturnType<F> {
    return this.storage.run(ctx, () => fn.apply(thisArg as ThisParameterType<F>, args));
  }

  bind<T>(ctx: Context, target: T): T {
    if (typeof target !== 'function') return target;
    const fn = target as unknown as (...a: unknown[]) => unknown;
    return ((...a: unknown[]) => this.with(ctx, fn, undefined, ...a)) as unknown as T;
  }

  enable(): this {
    return this;
  }

  disable(): this {
    this.storage.disable();
    this.storage = new AsyncLocalStorage<Context>();
    return this;
  }
}

const activeManager = new StorageContextManager();
const activeContext = () => activeManager.active();

/** The context manager the lite tracer registers globally (exported for its registration only). */
export function liteContextManager(): ContextManager {
  return activeManager;
}
