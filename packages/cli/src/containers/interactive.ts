import { BerthError, Code } from '@berth/api';
import { attach, resizeProcessTerminal } from '@berth/shim/attach';
import { terminalSizer } from './terminal-size.js';

/** What an interactive session needs of a process: its monitor's attach socket and control fifo. */
export interface Attachable {
  attachPath?: string;
  ctlPath?: string;
  /** The process (a created task's init): its terminal's size is set on its pty at once too. */
  pid?: number;
}

/** A running session: `ready` once the terminal size reached the monitor, `done` at the end. */
export interface InteractiveSession {
  ready: Promise<void>;
  done: Promise<void>;
}

/**
 * Runs this terminal against a process through its monitor (same host): output to stdout/stderr,
 * with a TTY raw mode and resize (SIGWINCH), with `stdin` the caller's input forwarded in order.
 * At the end of input the process's stdin is closed only when `closeStdinAtEof` (docker's run -i
 * semantics); an attach leaves it open for the next client. Start the process only after `ready`:
 * the first size must reach the terminal before the process asks for it. `done` settles when the
 * process's output ends (it exited) or the monitor hung up.
 */
export function interactive(
  p: Attachable,
  o: { tty: boolean; stdin: boolean; closeStdinAtEof: boolean },
): InteractiveSession {
  if (!p.attachPath) {
    throw new BerthError(Code.FAILED_PRECONDITION, 'the process has no attach socket: is it still running?');
  }
  const input = process.stdin;
  const output = process.stdout;
  const session = attach(p.attachPath, {
    stdout: (b) => output.write(b),
    stderr: (b) => process.stderr.write(b),
  });
  const cleanups: (() => void)[] = [];
  let ready: Promise<void> = Promise.resolve();
  if (o.tty && p.ctlPath && output.isTTY) {
    const ctl = p.ctlPath;
    const pid = p.pid ?? 0;
    // On the pty itself too, so a process started once `ready` resolves sees the size.
    const resize = terminalSizer(output, (rows, cols) => resizeProcessTerminal(ctl, pid, rows, cols));
    ready = resize();
    const onWinch = () => void resize();
    process.on('SIGWINCH', onWinch);
    cleanups.push(() => process.off('SIGWINCH', onWinch));
  }
  if (o.stdin) {
    if (o.tty && input.isTTY) {
      input.setRawMode(true);
      cleanups.push(() => input.setRawMode(false));
    }
    // Writes are chained so bytes keep their order and the end of input never overtakes them.
    let pending: Promise<void> = Promise.resolve();
    const onData = (b: Buffer) => {
      pending = pending.then(() => session.write(b)).catch(() => undefined);
    };
    const onEnd = () => {
      if (o.closeStdinAtEof) pending = pending.then(() => session.closeStdin());
    };
    input.on('data', onData);
    input.on('end', onEnd);
    input.resume();
    cleanups.push(() => {
      input.off('data', onData);
      input.off('end', onEnd);
      input.pause();
    });
  }
  const done = session.done.finally(() => {
    for (const c of cleanups) c();
  });
  return { ready, done };
}
