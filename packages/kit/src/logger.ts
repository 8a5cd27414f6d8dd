import { trace } from '@opentelemetry/api';
import { type DestinationStream, type Logger, pino } from 'pino';

export type { Logger } from 'pino';

/**
 * Creates a service's logger: JSON lines on stdout (or appended to `file`, as a co-hosted process
 * gives each service its own log; or to `destination`, in tests), with the active trace and span
 * ids on each line.
 */
export function createLogger(opts: {
  service: string;
  node: string;
  level: string;
  /** A file the lines are appended to instead of stdout (co-hosted services). */
  file?: string;
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
  if (opts.destination) return pino(options, opts.destination);
  if (!opts.file) return pino(options);
  // Synchronous like pino's stdout: a line is on disk before the process can exit.
  return pino(
    options,
    pino.destination({ dest: opts.file, append: true, sync: true, mkdir: true, mode: 0o640 }),
  );
}
