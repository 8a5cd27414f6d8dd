import { type Context, context, type TextMapGetter, type TextMapSetter } from '@opentelemetry/api';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BatchSpanProcessor, type SpanProcessor } from '@opentelemetry/sdk-trace-base';
import { NodeTracerProvider } from '@opentelemetry/sdk-trace-node';
import { ATTR_SERVICE_NAME, ATTR_SERVICE_VERSION } from '@opentelemetry/semantic-conventions';
import type { MsgHdrs } from 'nats';

let provider: NodeTracerProvider | undefined;
// Used directly (not via the global API) so propagation works even before a provider is registered.
const w3c = new W3CTraceContextPropagator();

/**
 * Starts OpenTelemetry tracing for this process. Call it first in main, before connecting anything.
 * Spans are exported over OTLP/HTTP only when OTEL_EXPORTER_OTLP_ENDPOINT (or the traces variant) is set;
 * trace context is still created and propagated without an exporter.
 */
export function startTelemetry(opts: {
  service: string;
  version: string;
  node: string;
  extraProcessors?: SpanProcessor[];
}): { shutdown: () => Promise<void> } {
  const processors: SpanProcessor[] = [...(opts.extraProcessors ?? [])];
  if (process.env.OTEL_EXPORTER_OTLP_ENDPOINT || process.env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) {
    processors.push(new BatchSpanProcessor(new OTLPTraceExporter()));
  }
  provider = new NodeTracerProvider({
    resource: resourceFromAttributes({
      [ATTR_SERVICE_NAME]: opts.service,
      [ATTR_SERVICE_VERSION]: opts.version,
      'host.name': opts.node,
      'berth.node': opts.node,
    }),
    spanProcessors: processors,
  });
  provider.register({ propagator: w3c });
  return {
    shutdown: async () => {
      await provider?.shutdown();
      provider = undefined;
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
  w3c.inject(ctx, headers, setter);
}

/** Reads the trace context carried by NATS headers, as a parent for the callee's span. */
export function extractTrace(headers: MsgHdrs | undefined): Context {
  return w3c.extract(context.active(), headers, getter);
}
