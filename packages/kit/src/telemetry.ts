import { createRequire } from 'node:module';
import { toBerthError } from '@berth/api/errors';
import {
  type Context,
  context,
  isSpanContextValid,
  SpanStatusCode,
  type TextMapGetter,
  type TextMapSetter,
  trace,
} from '@opentelemetry/api';
import type { W3CTraceContextPropagator } from '@opentelemetry/core';
import type { SpanProcessor } from '@opentelemetry/sdk-trace-base';
import type { NodeTracerProvider } from '@opentelemetry/sdk-trace-node';
import type { MsgHdrs } from 'nats';

// The SDK and the exporter cost ~100 ms to load, paid by every process importing the kit (the CLI
// too, even for `berth --version`), so they load only when telemetry starts. They ship as
// CommonJS, which an ESM import resolves to anyway, so require() yields the very same modules;
// the API keeps its registrations on globalThis in any case.
const load = createRequire(import.meta.url);

let provider: NodeTracerProvider | undefined;
// Used directly (not via the global API) so propagation works even before a provider is registered;
// created on first use for the same reason as above.
let w3cPropagator: W3CTraceContextPropagator | undefined;
function w3c(): W3CTraceContextPropagator {
  w3cPropagator ??= new (
    load('@opentelemetry/core') as typeof import('@opentelemetry/core')
  ).W3CTraceContextPropagator();
  return w3cPropagator;
}

/** How long shutdown waits for the last spans to be exported. */
const SHUTDOWN_FLUSH_MS = 2000;

/** True when OTEL_EXPORTER_OTLP_ENDPOINT (or the traces variant) asks for spans to be exported. */
export function otlpExportConfigured(env: NodeJS.ProcessEnv = process.env): boolean {
  return Boolean(env.OTEL_EXPORTER_OTLP_ENDPOINT || env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT);
}

/**
 * Starts OpenTelemetry tracing for this process. Call it first in main, before connecting anything.
 * Spans are exported over OTLP/HTTP only when OTEL_EXPORTER_OTLP_ENDPOINT (or the traces variant) is set;
 * trace context is still created and propagated without an exporter. `shutdown` exports the spans
 * still batched, waiting at most 2 s for the collector.
 */
export function startTelemetry(opts: {
  service: string;
  version: string;
  node: string;
  extraProcessors?: SpanProcessor[];
}): { shutdown: () => Promise<void> } {
  const base = load('@opentelemetry/sdk-trace-base') as typeof import('@opentelemetry/sdk-trace-base');
  const node = load('@opentelemetry/sdk-trace-node') as typeof import('@opentelemetry/sdk-trace-node');
  const { resourceFromAttributes } = load(
    '@opentelemetry/resources',
  ) as typeof import('@opentelemetry/resources');
  const processors: SpanProcessor[] = [...(opts.extraProcessors ?? [])];
  if (otlpExportConfigured()) {
    const otlp = load(
      '@opentelemetry/exporter-trace-otlp-http',
    ) as typeof import('@opentelemetry/exporter-trace-otlp-http');
    processors.push(new base.BatchSpanProcessor(new otlp.OTLPTraceExporter()));
  }
  provider = new node.NodeTracerProvider({
    resource: resourceFromAttributes({
      // The semantic-conventions names, spelled out: that package alone is large to load.
      'service.name': opts.service,
      'service.version': opts.version,
      'host.name': opts.node,
      'berth.node': opts.node,
    }),
    spanProcessors: processors,
  });
  provider.register({ propagator: w3c() });
  return {
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

const setter: TextMapSetter<MsgHdrs> = {
  set: (carrier, key, value) => carrier.set(key, value),
};
const getter: TextMapGetter<MsgHdrs | undefined> = {
  get: (carrier, key) => carrier?.get(key) || undefined,
  keys: (carrier) => (carrier ? carrier.keys() : []),
};

/** Writes the W3C traceparent/tracestate of `ctx` (default: the active context) into NATS headers. */
export function injectTrace(headers: MsgHdrs, ctx: Context = context.active()): void {
  // Without a valid span there is nothing to inject (the propagator would return here too): a
  // process that traces nothing, such as a CLI command without an exporter, never loads
  // @opentelemetry/core. Without a provider, a client's span is a non-recording one whose span
  // context is the all-zero, invalid one, so presence alone is not enough.
  const span = trace.getSpanContext(ctx);
  if (!span || !isSpanContextValid(span)) return;
  w3c().inject(ctx, headers, setter);
}

/** Reads the trace context carried by NATS headers, as a parent for the callee's span. */
export function extractTrace(headers: MsgHdrs | undefined): Context {
  // No traceparent, no remote parent: the propagator would return the active context as well.
  if (!headers?.get('traceparent')) return context.active();
  return w3c().extract(context.active(), headers, getter);
}

/**
 * Runs `fn` as the active span `name`, so the calls it makes are its children: the root span of a
 * short-lived process such as one CLI command. A failure marks the span ERROR with its berth error
 * code, as a service's server span is marked.
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
      throw err;
    } finally {
      span.end();
    }
  });
}
