import { trace } from '@opentelemetry/api';
import { type DestinationStream, type Logger, pino } from 'pino';

export type { Logger } from 'pino';

/** Creates the process logger: JSON lines on stdout, with the active trace and span ids on each line. */
export function createLogger(opts: {
  service: string;
  node: string;
  level: string;
  /** Where lines go instead of stdout (tests). */
  destination?: DestinationStream;
}): Logger {
  const options = {
    level: opts.level,
    base: { service: opts.service, node: opts.node, pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
    mixin() {
      const span = trace.getActiveSpan();
      if (!span) return {};
      const ctx = span.spanContext();
      return { trace_id: ctx.traceId, span_id: ctx.spanId };
    },
  };
  return opts.destination ? pino(options, opts.destination) : pino(options);
}
