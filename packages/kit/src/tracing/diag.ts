import { type DiagLogger, DiagLogLevel, diag } from '@opentelemetry/api';

/** Where telemetry problems go: stderr until the process logger exists, then the logger. */
export type DiagSink = (level: 'warn' | 'error', message: string) => void;

let sink: DiagSink = (level, message) => process.stderr.write(`telemetry ${level}: ${message}\n`);
const seen = new Set<string>();

/**
 * Installs the OpenTelemetry diagnostic logger of a service: warnings and errors (a collector that
 * is down, spans dropped, a span store that cannot be written) are logged once per kind rather than
 * on every export attempt, and never dropped silently.
 */
export function installDiagLogger(): void {
  const log =
    (level: 'warn' | 'error') =>
    (message: string, ...args: unknown[]) => {
      const text = [message, ...args.map(describe)].join(' ').trim();
      // One line per kind of problem: numbers (ports, counts, timings) vary between attempts.
      const kind = `${level}:${text.replace(/\d+/g, '#').slice(0, 160)}`;
      if (seen.has(kind)) return;
      seen.add(kind);
      sink(level, `${text} (logged once; later occurrences are not)`);
    };
  const noop = () => undefined;
  const logger: DiagLogger = {
    error: log('error'),
    warn: log('warn'),
    info: noop,
    debug: noop,
    verbose: noop,
  };
  diag.setLogger(logger, { logLevel: DiagLogLevel.WARN, suppressOverrideMessage: true });
}

/** Sends later telemetry problems to `next` (the process logger once it exists). */
export function setDiagSink(next: DiagSink): void {
  sink = next;
}

/**
 * Reports a telemetry problem through the diagnostic logger (once per kind): an error's message,
 * never its stack. Also the SDK's global error handler, which may be given anything.
 */
export function reportTelemetryError(err: unknown): void {
  diag.error(describe(err));
}

function describe(a: unknown): string {
  if (a instanceof Error) return a.message;
  if (typeof a === 'string') return a;
  try {
    return JSON.stringify(a);
  } catch {
    return String(a);
  }
}
