import type {
  Exception,
  Link,
  Span,
  SpanAttributes,
  SpanAttributeValue,
  SpanContext,
  SpanStatus,
  TimeInput,
} from '@opentelemetry/api';

// Starting a CRI call's server span (the SDK's startSpan: sampler, ids, attributes, processors)
// took 70-90 us of a read's path on this loaded machine, before its handler ran; a read answered
// from the gateway's memory never looks at its span again until the call ends, after the reply
// has been written. So the call's span is this stand-in: the real span is started, with the
// call's arrival as its start time, the first time anything needs it (a child span reading its
// context, an attribute, the call's end), and every method is the real span's from then on.

/**
 * A span that starts the real one on first use: `make` gets nothing and must return the real
 * span (started with the time the call began). The trace it records is the same as an eager one.
 */
export class LazySpan implements Span {
  private real: Span | undefined;

  constructor(private readonly make: () => Span) {}

  /** The real span, started now if it was not yet. */
  get span(): Span {
    if (this.real === undefined) this.real = this.make();
    return this.real;
  }

  /** Whether the real span has been started (tests, and callers that could skip it). */
  get started(): boolean {
    return this.real !== undefined;
  }

  spanContext(): SpanContext {
    return this.span.spanContext();
  }

  setAttribute(key: string, value: SpanAttributeValue): this {
    this.span.setAttribute(key, value);
    return this;
  }

  setAttributes(attributes: SpanAttributes): this {
    this.span.setAttributes(attributes);
    return this;
  }

  addEvent(name: string, attributesOrStartTime?: SpanAttributes | TimeInput, startTime?: TimeInput): this {
    this.span.addEvent(name, attributesOrStartTime, startTime);
    return this;
  }

  addLink(link: Link): this {
    this.span.addLink(link);
    return this;
  }

  addLinks(links: Link[]): this {
    this.span.addLinks(links);
    return this;
  }

  setStatus(status: SpanStatus): this {
    this.span.setStatus(status);
    return this;
  }

  updateName(name: string): this {
    this.span.updateName(name);
    return this;
  }

  end(endTime?: TimeInput): void {
    this.span.end(endTime);
  }

  isRecording(): boolean {
    return this.span.isRecording();
  }

  recordException(exception: Exception, time?: TimeInput): void {
    this.span.recordException(exception, time);
  }
}
