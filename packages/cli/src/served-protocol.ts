/**
 * The protocol of commands the `berth up` supervisor runs for the launcher (served.ts), apart from
 * the code that runs them: the supervisor's control socket speaks it without loading that code.
 */

/** A launcher's request: its arguments and its environment (the variables the CLI reads). */
export interface ServedRequest {
  argv: string[];
  env: Record<string, string>;
}

/**
 * What the supervisor sends back, one per line: `accepted` (the command runs there) or `refused`
 * (the launcher runs it itself), then the command's output and its exit code.
 */
export type ServedLine =
  | { type: 'accepted' }
  | { type: 'refused'; reason: string }
  | { type: 'out'; data: string }
  | { type: 'err'; data: string }
  | { type: 'exit'; code: number };

/** What the served bundle (dist/bundle/served.cjs) exports to the supervisor. */
export interface ServedModule {
  CommandServer: new (socket: string) => CommandRunner;
}

/** Runs served commands for a supervisor (served.ts CommandServer). */
export interface CommandRunner {
  serve(req: ServedRequest, send: (line: ServedLine) => void): Promise<void>;
  close(): Promise<void>;
}
