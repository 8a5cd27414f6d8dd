/**
 * The protocol of commands the `berth up` supervisor runs for the `berth` command (served.ts), apart
 * from the code that runs them: the supervisor's control socket speaks it without loading that code.
 *
 * The client (native/berth.c) sends one JSON line, `{"op":"run","argv":[...],"env":{...},"cwd":"/..",
 * "bundleMtimeNs":"N"}`. The supervisor answers in frames, a type byte and a 32-bit big-endian
 * length before the payload: `A` accepted or `R` refused (its reason; the client runs the command
 * itself). After `A` the client sends `{"op":"go"}`, and the command runs only then: a client that
 * gave up waiting (and runs the command itself) hangs up instead, so no command runs twice. Then
 * come `O` stdout and `E` stderr bytes, and last `X` with the exit code in decimal. `S` says the
 * command now takes the signals the client gets (as `berth run` forwards them to its container),
 * `U` that it no longer does: the client then sends a `{"op":"signal","signal":"SIGINT"}` line for
 * each, and until `S` and after `U` a signal ends the client as it would end the CLI run by hand.
 * A client that hangs up ends the command as the CLI killed there would (CliContext.gone). Bytes,
 * not JSON text: the client relays output as it is, and never parses JSON.
 */

/** A client's request: its arguments, its whole environment and its working directory. */
export interface ServedRequest {
  argv: string[];
  env: Record<string, string>;
  cwd: string;
}

/** What the supervisor sends back, one frame each. */
export type ServedLine =
  | { type: 'accepted' }
  | { type: 'refused'; reason: string }
  | { type: 'out'; data: string | Uint8Array }
  | { type: 'err'; data: string | Uint8Array }
  | { type: 'exit'; code: number }
  | { type: 'signals'; taken: boolean };

/** The type byte of each frame. */
export const FRAME_TYPE = {
  accepted: 0x41,
  refused: 0x52,
  out: 0x4f,
  err: 0x45,
  exit: 0x58,
  signalsTaken: 0x53,
  signalsLeft: 0x55,
} as const;

/** One frame: type byte, payload length (32-bit big-endian), payload. */
export function encodeFrame(line: ServedLine): Buffer {
  const payload =
    line.type === 'accepted' || line.type === 'signals'
      ? Buffer.alloc(0)
      : line.type === 'refused'
        ? Buffer.from(line.reason, 'utf8')
        : line.type === 'exit'
          ? Buffer.from(String(line.code), 'ascii')
          : Buffer.from(line.data);
  const head = Buffer.alloc(5);
  head[0] =
    line.type === 'signals'
      ? line.taken
        ? FRAME_TYPE.signalsTaken
        : FRAME_TYPE.signalsLeft
      : FRAME_TYPE[line.type];
  head.writeUInt32BE(payload.length, 1);
  return Buffer.concat([head, payload]);
}

/** The signals the client forwards while a served command runs. */
export const SERVED_SIGNALS: readonly NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];

/** The client of a served command, as its connection tells. */
export interface ServedClient {
  /** True once the client said `go` (it waits for this command), false when it hung up first. */
  confirmed: Promise<boolean>;
  /** Calls `fn` for each signal the client forwards; returns how to stop (see the S/U frames). */
  onSignal(fn: (sig: NodeJS.Signals) => void): () => void;
  /** Resolves when the client hung up. */
  gone: Promise<void>;
  /** Resolves once what was sent left for the client, or it hung up. */
  drained(): Promise<void>;
}

/** What the served bundle (dist/bundle/served.cjs) exports to the supervisor. */
export interface ServedModule {
  CommandServer: new (socket: string) => CommandRunner;
}

/** Runs served commands for a supervisor (served.ts CommandServer). */
export interface CommandRunner {
  /** `send` returns false when the client is behind: wait for `client.drained()` before more. */
  serve(req: ServedRequest, send: (line: ServedLine) => boolean, client: ServedClient): Promise<void>;
  close(): Promise<void>;
}
