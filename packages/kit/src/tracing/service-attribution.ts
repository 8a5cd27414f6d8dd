import { type Context, trace } from '@opentelemetry/api';
import type { Span, SpanProcessor } from '@opentelemetry/sdk-trace-base';

/** The span attribute naming the service a span of a co-hosted process belongs to. */
export const SERVICE_ATTRIBUTE = 'berth.service';

/**
 * Names the service of every span a co-hosted process makes, in `berth.service`: a server span
 * by its tracer (`berth.<service>`), any other span by its parent's when the parent was made in
 * this process. The process's resource is one (`berth-cohosted`), so without this every span of
 * `berth trace` would say the process, not the service. Spans with no such parent (background
 * work, an event from another process) keep the process's name.
 */
export class ServiceAttribution implements SpanProcessor {
  constructor(private readonly services: ReadonlySet<string>) {}

  onStart(span: Span, parent: Context): void {
    const scope = span.instrumentationScope.name;
    const own = scope.startsWith('berth.') ? scope.slice('berth.'.length) : '';
    if (this.services.has(own)) {
      span.setAttribute(SERVICE_ATTRIBUTE, own);
      return;
    }
    // A local parent is the SDK's span, whose attributes are readable; a remote one has none.
    const p = trace.getSpan(parent) as unknown as { attributes?: Record<string, unknown> } | undefined;
    const inherited = p?.attributes?.[SERVICE_ATTRIBUTE];
    if (typeof inherited === 'string') span.setAttribute(SERVICE_ATTRIBUTE, inherited);
  }

  onEnd(): void {}

  forceFlush(): Promise<void> {
    return Promise.resolve();
  }

  shutdown(): Promise<void> {
    return Promise.resolve();
  }
}
