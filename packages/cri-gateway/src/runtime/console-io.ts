import type { AttachSession, AttachSinks } from '@berth/shim/attach';
import type { CommandIo, TerminalSize } from '../streaming/types.js';

/**
 * How the gateway reaches a process's monitor (conmon) on this node: its attach socket and its
 * control fifo. The gateway passes @berth/shim/attach; the domain never opens sockets itself.
 */
export interface ConsolePort {
  attach(attachPath: string, sinks: AttachSinks): AttachSession;
  resize(ctlPath: string, rows: number, cols: number): Promise<void>;
}

/** How long an exec with a TTY waits for the client's first terminal size before it starts. */
export const FIRST_SIZE_WAIT_MS = 1000;

/** A streaming client's I/O bound to one monitor session. */
export interface ConsoleBinding {
  /** The session to the monitor; `done` settles when the process's output ended. */
  session: AttachSession;
  /** Settles once the client's first terminal size reached the monitor (or none came in time). */
  firstSize: Promise<void>;
  /** Stops forwarding input and resizes (the session itself is left to the caller). */
  unbind(): void;
}

/**
 * What the end of the client's stdin does: `close` half-closes the connection, and conmon closes
 * the process's stdin (unless told to keep it open); `detach` ends the session and leaves the
 * process running, as containerd's attach does unless the container is stdin-once without a TTY.
 */
export type StdinEnd = 'close' | 'detach';

/**
 * Connects `io` to the process behind `attachPath`: its output to the client's stdout/stderr, the
 * client's stdin to the process (its end as `stdinEnd` says), and, with a TTY, the client's
 * resizes to the control fifo.
 */
export function bindConsole(
  port: ConsolePort,
  p: {
    attachPath: string;
    ctlPath?: string | undefined;
    tty: boolean;
    stdin: boolean;
    stdinEnd: StdinEnd;
  },
  io: CommandIo,
): ConsoleBinding {
  const out = io.stdout;
  const err = io.stderr ?? io.stdout;
  // The monitor's reads do not wait for the client: output is queued on the client's streams,
  // whose own flow control (SPDY windows or TCP) paces the network side.
  const session = port.attach(p.attachPath, {
    stdout: (b) => {
      if (out && !out.destroyed) out.write(b);
    },
    stderr: (b) => {
      if (err && !err.destroyed) err.write(b);
    },
  });
  let bound = true;
  const cleanups: (() => void)[] = [];
  const stdin = p.stdin ? io.stdin : undefined;
  if (stdin) {
    // Writes are chained so bytes keep their order and the EOF never overtakes them.
    let pending: Promise<void> = Promise.resolve();
    // Reading pauses while a write is under way: the monitor's pace holds the client back.
    const onData = (b: Buffer) => {
      stdin.pause();
      pending = pending
        .then(() => (bound ? session.write(b) : undefined))
        .catch(() => undefined)
        .finally(() => {
          if (bound) stdin.resume();
        });
    };
    const onEnd = () => {
      pending = pending.then(() => {
        if (!bound) return;
        if (p.stdinEnd === 'close') session.closeStdin();
        else session.detach();
      });
    };
    stdin.on('data', onData);
    stdin.once('end', onEnd);
    cleanups.push(() => {
      stdin.off('data', onData);
      stdin.off('end', onEnd);
    });
  }
  let firstSize: Promise<void> = Promise.resolve();
  if (p.tty && p.ctlPath) {
    const ctl = p.ctlPath;
    const sizes = io.resize[Symbol.asyncIterator]();
    const apply = (s: TerminalSize) =>
      port.resize(ctl, s.height, s.width).catch(() => undefined /* a bad size or the process left */);
    const first = sizes.next();
    firstSize = Promise.race([
      first.then(async (r) => {
        if (!r.done) await apply(r.value);
      }),
      new Promise<void>((resolve) => setTimeout(resolve, FIRST_SIZE_WAIT_MS).unref()),
    ]).catch(() => undefined);
    void (async () => {
      if ((await first.catch(() => ({ done: true as const }))).done) return;
      for (;;) {
        const r = await sizes.next().catch(() => ({ done: true as const, value: undefined }));
        if (r.done || !bound) return;
        await firstSize; // the first size is applied before any later one
        await apply(r.value);
      }
    })();
  } else {
    void (async () => {
      // Drain resizes nobody needs, so the client's resize stream never stalls.
      for await (const _ of io.resize) if (!bound) return;
    })().catch(() => undefined);
  }
  return {
    session,
    firstSize,
    unbind() {
      bound = false;
      for (const c of cleanups) c();
    },
  };
}
