import { randomUUID } from 'node:crypto';
import { createRequire } from 'node:module';
import { toBerthError } from '@berth/api/errors';
import {
  type Attributes,
  type Context,
  context,
  isSpanContextValid,
  SpanStatusCode,
  trace,
} from '@opentelemetry/api';
import type { SpanProcessor } from '@opentelemetry/sdk-trace-base';
import type { NodeTracerProvider } from '@opentelemetry/sdk-trace-node';
import type { MsgHdrs } from 'nats';
import type { Logger } from 'pino';
import { installDiagLogger, reportTelemetryError, setDiagSink } from './tracing/diag.js';
import { resourceAttributes } from './tracing/resource.js';
import { StoreSpanExporter } from './tracing/store-exporter.js';
import { contextFromTraceparent, formatTraceparent } from './tracing/traceparent.js';

// The SDK and the exporter cost ~150 ms to load, paid by every process importing the kit (the CLI
// too, even for `berth --version`), so they load only when a service starts telemetry; the CLI
// records its spans with the lite tracer instead (tracing/cli-telemetry.ts). They ship as CommonJS,
// which an ESM import resolves to anyway, so require() yields the very same modules; the API keeps
// its registrations on globalThis in any case. The require is made on first use too: building it
// (a file URL made and parsed) cost every CLI command ~0.3 ms for nothing.
let sdkRequire: NodeRequire | undefined;
const load = (id: string): unknown => {
  sdkRequire ??= createRequire(import.meta.url);
  return sdkRequire(id);
};

let provider: NodeTracerProvider | undefined;

/** How long shutdown waits for the last spans to be exported. */
const SHUTDOWN_FLUSH_MS = 2000;
/** How long finished spans wait before a batch is written to the span store. */
const STORE_DELAY_MS = 200;

/** True when OTEL_EXPORTER_OTLP_ENDPOINT (or the traces variant) asks for spans to be exported. */
export function otlpExportConfigured(env: NodeJS.ProcessEnv = process.env): boolean {
  return Boolean(env.OTEL_EXPORTER_OTLP_ENDPOINT || env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT);
}

/** A started telemetry: the process's instance id, where problems are logged, and shutdown. */
export interface Telemetry {
  /** service.instance.id of this process's resource. */
  readonly instance: string;
  /** Logs later telemetry problems (collector down, store unwritable) once each to `log`. */
  useLogger(log: Logger): void;
  shutdown(): Promise<void>;
}

/**
 * Starts OpenTelemetry tracing for this process. Call it first in main, before connecting anything.
 * Finished spans go to the embedded span store in `storeDir` when given (written every 200 ms) and
 * over OTLP/HTTP when OTEL_EXPORTER_OTLP_ENDPOINT (or the traces variant) is set; trace context is
 * created and propagated either way. Export problems are logged once each, never silently dropped.
 * `shutdown` exports the spans still batched, waiting at most 2 s for the collector.
 */
export function startTelemetry(opts: {
  service: string;
  version: string;
  node: string;
  storeDir?: string;
  extraProcessors?: SpanProcessor[];
}): Telemetry {
  installDiagLogger();
  // A failed export reaches the SDK's global error handler too, whose default logs the error
  // serialized, stack and all, beside the exporter's own line: it goes the same once-per-kind way.
  const core = load('@opentelemetry/core') as typeof import('@opentelemetry/core');
  core.setGlobalErrorHandler(reportTelemetryError);
  const base = load('@opentelemetry/sdk-trace-base') as typeof import('@opentelemetry/sdk-trace-base');
  const node = load('@opentelemetry/sdk-trace-node') as typeof import('@opentelemetry/sdk-trace-node');
  const { resourceFromAttributes } = load(
    '@opentelemetry/resources',
  ) as typeof import('@opentelemetry/resources');
  const processors: SpanProcessor[] = [...(opts.extraProcessors ?? [])];
  if (opts.storeDir) {
    processors.push(
      new base.BatchSpanProcessor(new StoreSpanExporter(opts.storeDir, reportTelemetryError), {
        scheduledDelayMillis: STORE_DELAY_MS,
      }),
    );
  }
  if (otlpExportConfigured()) {
    const otlp = load(
      '@opentelemetry/exporter-trace-otlp-http',
    ) as typeof import('@opentelemetry/exporter-trace-otlp-http');
    processors.push(new base.BatchSpanProcessor(new otlp.OTLPTraceExporter()));
  }
  const instance = randomUUID();
  provider = new node.NodeTracerProvider({
    resource: resourceFromAttributes(
      resourceAttributes({
        service: opts.service,
        version: opts.version,
        node: opts.node,
        instance,
      }) as Attributes,
    ),
    spanProcessors: processors,
  });
  provider.register();
  return {
    instance,
    useLogger: (log) => setDiagSink((level, message) => log[level]({ component: 'telemetry' }, message)),
    shutdown: async () => {
      const p = provider;
      provider = undefined;
      if (!p) return;
      // The exporter retries an unreachable collector for up to its 10 s timeout; a process that
      // is exiting (every CLI command, `berth down`) should not wait that long for it.
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<void>((resolve) => {
        timer = setTimeout(resolve, SHUTDOWN_FLUSH_MS);
        timer.unref();
      });
      await Promise.race([p.shutdown(), late]).finally(() => clearTimeout(timer));
    },
  };
}

/** Writes the W3C traceparent/tracestate of `ctx` (default: the active context) into NATS headers. */
export function injectTrace(headers: MsgHdrs, ctx: Context = context.active()): void {
  const sc = trace.getSpanContext(ctx);
  if (!sc || !isSpanContextValid(sc)) return;
  headers.set('traceparent', formatTraceparent(sc));
  const state = sc.traceState?.serialize();
  if (state) headers.set('tracestate', state);
}

/** Reads the trace context carried by NATS headers, as a parent for the callee's span. */
export function extractTrace(headers: MsgHdrs | undefined): Context {
  return contextFromTraceparent(
    headers?.get('traceparent') || undefined,
    headers?.get('tracestate') || undefined,
  );
}

/**
 * Runs `fn` as the active span `name`, so the calls it makes are its children. A failure marks the
 * span ERROR with its berth error code and records the exception as a span event.
 */
export async function inSpan<T>(name: string, fn: () => Promise<T>): Promise<T> {
  return trace.getTracer('berth').startActiveSpan(name, async (span) => {
    try {
      const out = await fn();
      span.setStatus({ code: SpanStatusCode.OK });
      return out;
    } catch (err) {
      const e = toBerthError(err);
      span.setStatus({ code: SpanStatusCode.ERROR, message: e.message });
      span.setAttribute('berth.error_code', e.code);
      span.recordException({ name: e.code, message: e.message });
      throw err;
    } finally {
      span.end();
    }
  });
}
