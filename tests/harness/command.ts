/**
 * Starting a command from a test and collecting what it prints: the one place the harness
 * spawns a process for its output (runBerth, the SDK examples, any other command), on pipes
 * (startCommand) or on a pseudo-terminal the test holds (openTerminal).
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/** How a command ended, and all it printed. */
export interface CommandRun {
  /** The exit code; null when a signal ended it. */
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** It ran past its timeoutMs and was SIGKILLed. */
  timedOut: boolean;
}

/** A command still running: its output so far, and its end. */
export interface RunningCommand {
  stdout(): string;
  stderr(): string;
  kill(signal?: NodeJS.Signals): void;
  done: Promise<CommandRun>;
}

/** Options of a command run. */
export interface CommandOptions {
  env: NodeJS.ProcessEnv;
  cwd?: string;
  /** Written to its stdin, which is then closed (empty when not given). */
  input?: string;
  /** SIGKILLed after this long (default 90 s). */
  timeoutMs?: number;
}

/** Starts `command args`, collecting its output; see CommandOptions for its input and bound. */
export function startCommand(command: string, args: string[], opts: CommandOptions): RunningCommand {
  const proc = spawn(command, args, {
    env: opts.env,
    ...(opts.cwd ? { cwd: opts.cwd } : {}),
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  let timedOut = false;
  proc.stdout.setEncoding('utf8').on('data', (d: string) => {
    stdout += d;
  });
  proc.stderr.setEncoding('utf8').on('data', (d: string) => {
    stderr += d;
  });
  // A command may exit before it read all its input (run -i of a process that reads none):
  // the pipe's EPIPE is no failure of the test, whose exit code and output tell what happened.
  proc.stdin.on('error', () => undefined);
  proc.stdin.end(opts.input ?? '');
  const timer = setTimeout(() => {
    timedOut = true;
    proc.kill('SIGKILL');
  }, opts.timeoutMs ?? 90_000);
  const done = new Promise<CommandRun>((resolve, reject) => {
    proc.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    proc.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, timedOut });
    });
  });
  return { stdout: () => stdout, stderr: () => stderr, kill: (s) => proc.kill(s ?? 'SIGTERM'), done };
}

/** Where the pseudo-terminal openTerminal runs its command on is made (python3: os.openpty, termios). */
const PTY_DRIVER = fileURLToPath(new URL('./pty-driver.py', import.meta.url));

/** A command running on a pseudo-terminal the test holds (openTerminal). */
export interface Terminal {
  /** Everything the terminal showed so far. */
  output(): string;
  /** Types text into the terminal (end a line with `\r`, the terminal's Enter). */
  type(text: string): void;
  /**
   * Resizes the terminal as a terminal window does: the kernel sends SIGWINCH to the process
   * group in its foreground. Resolves once the size is set (read back), rejects saying why not.
   */
  resize(rows: number, cols: number): Promise<void>;
  /** Resolves once the output shows `what`; rejects naming it, with the output, if the command ends or `timeoutMs` passes first. */
  waitFor(what: string | RegExp, timeoutMs?: number): Promise<void>;
  /**
   * The command's exit code (null after a signal, or when the bound SIGKILLed the terminal), its
   * output, and whether the bound ended it (the command was still running after `timeoutMs`).
   */
  done: Promise<{ code: number | null; out: string; timedOut: boolean }>;
  /** Ends the terminal (its command gets SIGHUP as the terminal hangs up). */
  close(): void;
}

/**
 * Runs `argv` on a pseudo-terminal of `rows` x `cols` that the test makes and holds itself
 * (harness/pty-driver.py), not script(1) with stty run inside it: the size is set on the terminal
 * before the command starts, with nothing run inside it, and resize() changes it the way a window
 * resize does, checked. The terminal is SIGKILLed after `timeoutMs` (60 s unless set).
 */
export function openTerminal(
  argv: string[],
  opts: { env: NodeJS.ProcessEnv; rows: number; cols: number; timeoutMs?: number },
): Terminal {
  const p = spawn('python3', [PTY_DRIVER, String(opts.rows), String(opts.cols), '--', ...argv], {
    env: opts.env,
    stdio: ['pipe', 'pipe', 'pipe', 'pipe'],
  });
  let timedOut = false;
  const bound = setTimeout(() => {
    timedOut = true;
    p.kill('SIGKILL');
  }, opts.timeoutMs ?? 60_000);
  let out = '';
  let errors = '';
  let ended = false;
  const changed = new Set<() => void>();
  const notify = () => {
    for (const f of [...changed]) f();
  };
  p.stdout.on('data', (b: Buffer) => {
    out += b.toString();
    notify();
  });
  // The driver's answers to resizes, one a line, in the order they were asked.
  const answers: ((line: string) => void)[] = [];
  p.stderr.setEncoding('utf8').on('data', (d: string) => {
    errors += d;
    for (let nl = errors.indexOf('\n'); nl >= 0; nl = errors.indexOf('\n')) {
      const line = errors.slice(0, nl);
      errors = errors.slice(nl + 1);
      const next = answers.shift();
      if (next) next(line);
      else out += `\n[pty-driver] ${line}\n`;
    }
  });
  // Typing into a command that already ended (EPIPE) is no failure: its output and code tell.
  p.stdin.on('error', () => undefined);
  const control = p.stdio[3] as NodeJS.WritableStream;
  control.on('error', () => undefined);
  const done = new Promise<{ code: number | null; out: string; timedOut: boolean }>((resolve) => {
    p.on('close', (code) => {
      clearTimeout(bound);
      ended = true;
      notify();
      for (const a of answers.splice(0)) a('error: the terminal ended');
      resolve({ code, out, timedOut });
    });
  });
  return {
    output: () => out,
    type: (text) => {
      p.stdin.write(text);
    },
    resize: (rows, cols) =>
      new Promise<void>((resolve, reject) => {
        if (ended) return reject(new Error(`cannot resize the terminal to ${rows}x${cols}: it ended`));
        answers.push((line) =>
          line === `resized ${rows} ${cols}`
            ? resolve()
            : reject(new Error(`resizing the terminal to ${rows}x${cols} failed: ${line}`)),
        );
        control.write(`resize ${rows} ${cols}\n`);
      }),
    waitFor: (what, timeoutMs = 30_000) =>
      new Promise<void>((resolve, reject) => {
        const shows = () => (typeof what === 'string' ? out.includes(what) : what.test(out));
        const check = () => {
          if (shows()) finish();
          else if (ended) finish(new Error(`the terminal ended before it showed ${String(what)}:\n${out}`));
        };
        const timer = setTimeout(
          () =>
            finish(new Error(`the terminal did not show ${String(what)} within ${timeoutMs} ms:\n${out}`)),
          timeoutMs,
        );
        const finish = (err?: Error) => {
          clearTimeout(timer);
          changed.delete(check);
          if (err) reject(err);
          else resolve();
        };
        changed.add(check);
        check();
      }),
    done,
    close: () => {
      p.kill('SIGKILL');
    },
  };
}
