/**
 * How the CLI ends: every byte written to stdout/stderr reaches the reader before the process
 * exits, and a reader that goes away (`berth ps | head -1`) ends the CLI quietly.
 *
 * On Linux, Node writes to a pipe asynchronously: what the reader has not taken yet (beyond the
 * 64 KiB pipe buffer) waits in the stream's queue, and process.exit() drops it. So the CLI waits for
 * both streams to drain before it exits.
 */

/** Exit status after the reader of stdout went away: 128 + SIGPIPE, as coreutils and docker report. */
export const EXIT_BROKEN_PIPE = 141;

/** Resolves once everything written to `stream` so far was handed to the OS (or the stream failed). */
export function drained(stream: NodeJS.WriteStream): Promise<void> {
  if (stream.destroyed || stream.writableEnded || stream.writableLength === 0) return Promise.resolve();
  // Writes complete in order, so the callback of an empty write runs after all earlier ones.
  return new Promise((resolve) => stream.write('', () => resolve()));
}

/**
 * Makes a closed pipe on stdout or stderr end the process with EXIT_BROKEN_PIPE and no stack
 * trace, as a program killed by SIGPIPE (Node ignores the signal and reports EPIPE instead).
 * Other write errors still surface as before.
 */
export function exitQuietlyOnBrokenPipe(
  streams: NodeJS.WriteStream[] = [process.stdout, process.stderr],
  exit: (code: number) => void = (code) => process.exit(code),
): void {
  for (const s of streams) {
    s.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code !== 'EPIPE') throw err;
      exit(EXIT_BROKEN_PIPE);
    });
  }
}

/**
 * Ends the process with `code` once stdout and stderr have drained. process.exit() is still called
 * after the drain: a command may leave a handle open (a follow timer, stdin in raw mode) that
 * would otherwise keep the process alive; by then nothing written is lost.
 */
export async function exitWhenDrained(code: number): Promise<never> {
  process.exitCode = code;
  await Promise.all([drained(process.stdout), drained(process.stderr)]);
  process.exit();
}
