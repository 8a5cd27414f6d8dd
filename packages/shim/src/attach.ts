/**
 * Client side of interactive use (`berth run -it`, `exec -it`, `attach`), for a process on the same
 * host as the container: it talks to the container's monitor (conmon) directly, not through NATS,
 * so a session keeps working while the shim agent restarts.
 *
 * conmon's attach socket is AF_UNIX SOCK_SEQPACKET, which Node's net module cannot open; a
 * ten-function native addon (native/seqpacket.c, built by this package's build script with the
 * host C compiler) connects it, and reads and writes go through fs on the descriptor. Each packet
 * conmon sends starts with one byte naming the stream (2 stdout, 3 stderr); what the client sends is
 * the process's stdin, raw. A half-close (shutdown of the write side) makes conmon close the
 * process's stdin. Terminal size goes to conmon's window-size fifo (see resizeTerminal).
 *
 * A blocked read occupies one libuv threadpool thread per session (4 by default); fine for a CLI.
 */
import { close, constants, read, write } from 'node:fs';
import { open } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { BerthError, Code } from '@berth/api';

interface SeqpacketAddon {
  connect(path: string): number;
  shutdown(fd: number, how: number): void;
  setWinsize(path: string, rows: number, cols: number): void;
}

const SHUT_WR = 1;
const SHUT_RDWR = 2;
/** conmon reads at most 32 KiB per packet; keep each stdin packet well below. */
const MAX_PACKET = 8192;
/** conmon's packets are at most 8 KiB + 1 header byte. */
const READ_BUF = 64 * 1024;
const STREAM_STDOUT = 2;
const STREAM_STDERR = 3;

let addon: SeqpacketAddon | undefined;

function seqpacket(): SeqpacketAddon {
  if (!addon) {
    const require = createRequire(import.meta.url);
    try {
      addon = require('../build/seqpacket.node') as SeqpacketAddon;
    } catch (err) {
      throw new BerthError(
        Code.UNIMPLEMENTED,
        `the attach addon is not built (run the @berth/shim build): ${(err as Error).message}`,
      );
    }
  }
  return addon;
}

function readPacket(fd: number, buf: Buffer): Promise<number> {
  return new Promise((resolve, reject) => {
    read(fd, buf, 0, buf.length, null, (err, n) => (err ? reject(err) : resolve(n)));
  });
}

function writeAll(fd: number, data: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    write(fd, data, 0, data.length, null, (err, n) => {
      if (err) reject(err);
      else if (n !== data.length) reject(new Error(`short write to the attach socket (${n}/${data.length})`));
      else resolve();
    });
  });
}

/**
 * Where an attach session sends what the process writes. A sink returning a promise is awaited
 * before the next packet is read: a slow consumer (a stream over NATS) slows the reading down.
 */
export interface AttachSinks {
  stdout: (chunk: Buffer) => unknown;
  /** Defaults to stdout (a TTY process has only one stream anyway). */
  stderr?: (chunk: Buffer) => unknown;
}

/** A live connection to a process's monitor. */
export interface AttachSession {
  /** Settles when the monitor closes the connection (the process exited) or detach() was called. */
  readonly done: Promise<void>;
  /** Sends bytes to the process's stdin (it must have been created with stdin open). */
  write(data: Buffer | string): Promise<void>;
  /** Ends the process's stdin (conmon closes it) while output keeps flowing. */
  closeStdin(): void;
  /** Leaves the process running and closes this connection. */
  detach(): void;
}

/**
 * Connects to a monitor's attach socket (ShimState.attachPath) and streams the process's output
 * to the sinks until it exits. Connect before `start` to see all output: conmon does not replay.
 */
export function attach(attachPath: string, sinks: AttachSinks): AttachSession {
  let fd: number;
  try {
    fd = seqpacket().connect(attachPath);
  } catch (err) {
    throw new BerthError(
      Code.FAILED_PRECONDITION,
      `cannot attach to ${attachPath}: ${(err as Error).message} (is the process still running?)`,
    );
  }
  let closed = false;
  let stdinClosed = false;
  const shutdownQuiet = (how: number) => {
    try {
      seqpacket().shutdown(fd, how);
    } catch {
      // the peer is gone already
    }
  };
  const done = (async () => {
    const buf = Buffer.alloc(READ_BUF);
    let resets = 0;
    try {
      for (;;) {
        let n: number;
        try {
          n = await readPacket(fd, buf);
        } catch (err) {
          // conmon hanging up (the process exited) while stdin we sent sits unread in its queue makes
          // the kernel report ECONNRESET before the packets still queued for us. The error is
          // cleared once reported: read on for the rest of the output, then EOF.
          if ((err as NodeJS.ErrnoException).code !== 'ECONNRESET' || resets++ > 0) throw err;
          continue;
        }
        if (n <= 0) break;
        const stream = buf[0];
        const payload = Buffer.from(buf.subarray(1, n));
        let taken: unknown;
        if (stream === STREAM_STDERR) taken = (sinks.stderr ?? sinks.stdout)(payload);
        else if (stream === STREAM_STDOUT) taken = sinks.stdout(payload);
        if (taken instanceof Promise) await taken;
      }
    } catch (err) {
      if (!closed) throw err;
    } finally {
      closed = true;
      await new Promise<void>((r) => close(fd, () => r()));
    }
  })();
  return {
    done,
    async write(data) {
      if (closed || stdinClosed)
        throw new BerthError(Code.FAILED_PRECONDITION, 'stdin of the session is closed');
      const b = typeof data === 'string' ? Buffer.from(data) : data;
      for (let off = 0; off < b.length; off += MAX_PACKET) {
        await writeAll(fd, b.subarray(off, Math.min(b.length, off + MAX_PACKET)));
      }
    },
    closeStdin() {
      if (closed || stdinClosed) return;
      stdinClosed = true;
      shutdownQuiet(SHUT_WR);
    },
    detach() {
      if (closed) return;
      closed = true;
      shutdownQuiet(SHUT_RDWR);
    },
  };
}

/**
 * The length of every message berth sends conmon's fifos (`ctl`, `winsz`): one read of conmon's
 * fifo reader (199 bytes, a 200-byte buffer with its NUL). conmon up to 2.1.x (Debian 12 has 2.1.6)
 * applies the first line of a read once per line it holds, so two sizes that reach it in one read
 * set the first twice and the last never (fixed upstream in 2.2.0); and both fifos' readers share
 * that buffer, so a line left half-read on one would be completed by the other's bytes. A message
 * of exactly one read's length is always read alone and whole: the pipe keeps each write whole
 * (under PIPE_BUF) and a read stops at 199 bytes. conmon's `%d` skips the leading spaces.
 */
const FIFO_MESSAGE_LENGTH = 199;

/** `line` (ending in a newline) as one whole read of conmon's fifo reader. */
function conmonFifoMessage(line: string): string {
  if (!line.endsWith('\n') || line.length > FIFO_MESSAGE_LENGTH) {
    throw new Error(`not a conmon fifo line: ${JSON.stringify(line)}`);
  }
  return line.padStart(FIFO_MESSAGE_LENGTH, ' ');
}

/**
 * Writes `line` to one of a monitor's fifos as one whole read (conmonFifoMessage). conmon keeps
 * each fifo's read end open while it runs, so the non-blocking open fails at once when it does not:
 * FAILED_PRECONDITION, `notListening` and the cause.
 */
export async function writeConmonFifo(fifo: string, line: string, notListening: string): Promise<void> {
  const message = conmonFifoMessage(line);
  let fh: Awaited<ReturnType<typeof open>>;
  try {
    fh = await open(fifo, constants.O_WRONLY | constants.O_NONBLOCK);
  } catch (err) {
    throw new BerthError(Code.FAILED_PRECONDITION, `${notListening}: ${(err as Error).message}`);
  }
  try {
    await fh.write(message);
  } finally {
    await fh.close();
  }
}

/**
 * Sets the terminal size of a TTY process through its monitor (ShimState.ctlPath names the
 * monitor's control fifo; the size goes to its sibling `winsz`, the fifo conmon's own control
 * reader forwards sizes to). Not through `ctl`: conmon forwards each size it reads there to `winsz`
 * and may then read two of them at once there, which the padding below cannot prevent.
 */
export async function resizeTerminal(ctlPath: string, rows: number, cols: number): Promise<void> {
  checkTerminalSize(rows, cols);
  const fifo = join(dirname(ctlPath), 'winsz');
  await writeConmonFifo(fifo, `${rows} ${cols}\n`, `the monitor is not listening on ${fifo}`);
}

/**
 * Sets the terminal size of TTY process `pid` at once, on the pty it has as its stdin (the slave
 * of its monitor's pty, /proc/<pid>/fd/0): done when this returns, where resizeTerminal's size
 * lands whenever conmon reads its fifo. What a process created and not yet started needs: started
 * right after, it may ask for its size (`stty size`) before conmon has read it, and find 0x0.
 * FAILED_PRECONDITION when the process is gone or its stdin is no terminal (it may have closed
 * or replaced it: resizeTerminal reaches the pty through the monitor still).
 */
export function setProcessTerminalSize(pid: number, rows: number, cols: number): void {
  checkTerminalSize(rows, cols);
  try {
    seqpacket().setWinsize(`/proc/${pid}/fd/0`, rows, cols);
  } catch (err) {
    throw new BerthError(
      Code.FAILED_PRECONDITION,
      `cannot set the terminal size of process ${pid}: ${(err as Error).message}`,
    );
  }
}

/**
 * Sets the terminal size of TTY process `pid` (0 when not known) whose monitor's control fifo is
 * `ctlPath`: on its pty at once when it can (setProcessTerminalSize: a process created and started
 * right after sees it), and through its monitor (resizeTerminal: that reaches the pty even when
 * the process no longer has it as its stdin).
 */
export async function resizeProcessTerminal(
  ctlPath: string,
  pid: number,
  rows: number,
  cols: number,
): Promise<void> {
  checkTerminalSize(rows, cols);
  if (pid > 0) {
    try {
      setProcessTerminalSize(pid, rows, cols);
    } catch {
      // Gone, or its stdin no terminal now: the monitor's pty gets the size below.
    }
  }
  await resizeTerminal(ctlPath, rows, cols);
}

function checkTerminalSize(rows: number, cols: number): void {
  if (
    !Number.isInteger(rows) ||
    !Number.isInteger(cols) ||
    rows < 1 ||
    cols < 1 ||
    rows > 1000 ||
    cols > 1000
  ) {
    throw new BerthError(Code.INVALID_ARGUMENT, `invalid terminal size ${rows}x${cols} (1..1000 each)`);
  }
}

/** Makes conmon close a process's stdin: attach and hang up at once. */
export async function closeAttachStdin(attachPath: string): Promise<void> {
  const s = attach(attachPath, { stdout: () => undefined });
  s.closeStdin();
  s.detach();
  await s.done;
}
