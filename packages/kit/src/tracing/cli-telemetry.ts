import { randomUUID } from 'node:crypto';
import { exitCodeOf, toBerthError } from '@berth/api/errors';
import { context, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import { LiteTracerProvider, liteContextManager, SPAN_SINK_KEY, type SpanSink } from './lite-tracer.js';
import { postOtlp } from './otlp-post.js';
import { otlpHeaders, otlpTracesUrl, resourceAttributes } from './resource.js';
import { toOtlpJson } from './span-record.js';
import { appendSpans } from './span-store.js';

/** How long a command waits at exit for the collector to take its spans, ms (BERTH_OTLP_EXIT_MS). */
export const CLI_EXPORT_BOUND_MS = 25;

/** What a CLI command's telemetry needs to know. */
export interface CliTelemetryOptions {
  service: string;
  version: string;
  node: string;
  /** The span store directory, or undefined when the store is off. */
  storeDir?: string;
  env?: NodeJS.ProcessEnv;
  /** Attributes of the root span besides the node and the command (`berth.cli.served`). */
  attributes?: Record<string, string | number | boolean>;
}

/** The telemetry of one CLI command: its root span, its trace id, and the hand-over at exit. */
export interface CliTelemetry {
  /** Runs the command as the root span; the span records its exit code or error. */
  run(name: string, fn: () => Promise<number>): Promise<number>;
  /** The command's trace id once run() started. */
  traceId(): string | undefined;
  /** Writes the spans to the store and exports them (bounded); never throws. */
  finish(): Promise<void>;
}

/**
 * Starts a CLI command's telemetry with the lite tracer (no SDK is loaded): every command has a
 * root span and sends traceparent on every call, whether or not anything records the spans. At
 * exit the spans go to the span store and, when OTEL_EXPORTER_OTLP_ENDPOINT is set, to the
 * collector, waiting at most CLI_EXPORT_BOUND_MS for it.
 */
export function startCliTelemetry(o: CliTelemetryOptions): CliTelemetry {
  const env = o.env ?? process.env;
  const instance = randomUUID();
  const resource = resourceAttributes(
    { service: o.service, version: o.version, node: o.node, instance },
    env,
  );
  const sink: SpanSink = { service: String(resource['service.name']), instance, finished: [] };
  register(sink);
  let traceId: string | undefined;
  return {
    traceId: () => traceId,
    run: (name, fn) =>
      trace
        .getTracer('berth')
        .startActiveSpan(
          name,
          { kind: SpanKind.INTERNAL },
          context.active().setValue(SPAN_SINK_KEY, sink),
          async (span) => {
            traceId = span.spanContext().traceId;
            span.setAttributes({ 'berth.node': o.node, 'process.command': 'berth', ...o.attributes });
            try {
              const code = await fn();
              span.setAttribute('process.exit.code', code);
              span.setStatus(
                code === 0
                  ? { code: SpanStatusCode.OK }
                  : { code: SpanStatusCode.ERROR, message: `exited with code ${code}` },
              );
              return code;
            } catch (err) {
              const e = toBerthError(err);
              span.setAttributes({ 'process.exit.code': exitCodeOf[e.code], 'berth.error_code': e.code });
              span.setStatus({ code: SpanStatusCode.ERROR, message: e.message });
              span.recordException({ name: e.code, message: e.message });
              throw err;
            } finally {
              span.end();
            }
          },
        ),
    async finish() {
      const spans = sink.finished.splice(0);
      if (spans.length === 0) return;
      const url = otlpTracesUrl(env);
      const bound = Number(env.BERTH_OTLP_EXIT_MS) > 0 ? Number(env.BERTH_OTLP_EXIT_MS) : CLI_EXPORT_BOUND_MS;
      await Promise.all([
        // A store the user cannot write (not root) is no reason for a command to fail.
        o.storeDir ? appendSpans(o.storeDir, spans).catch(() => undefined) : undefined,
        url ? postOtlp(url, toOtlpJson(spans, resource), otlpHeaders(env), bound) : undefined,
      ]);
    },
  };
}

let registered: LiteTracerProvider | undefined;

/**
 * Points the process's lite tracer at a new sink, registering it with the API the first time.
 * A later start (several commands in one process, as tests and benchmarks run them) swaps the
 * sink, not the registration: the API's `disable` would leave the tracers that modules took at
 * load (the kit's client) on a provider that is gone.
 */
function register(sink: SpanSink): void {
  if (registered) {
    registered.sink = sink;
    return;
  }
  registered = new LiteTracerProvider(sink);
  if (!context.setGlobalContextManager(liteContextManager())) {
    context.disable();
    context.setGlobalContextManager(liteContextManager());
  }
  if (!trace.setGlobalTracerProvider(registered)) {
    // Something registered first (the SDK in a test process): the lite tracer takes over.
    trace.disable();
    trace.setGlobalTracerProvider(registered);
  }
}
