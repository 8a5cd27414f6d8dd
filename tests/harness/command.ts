/**
 * Starting a command from a test and collecting what it prints: the one place the harness
 * spawns a process for its output (runBerth, the SDK examples, any other command).
 */
import { spawn } from 'node:child_process';

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

/** Input runOnTerminal types: `text`, once the terminal has shown `when` (at once without it). */
export interface TerminalStep {
  when?: string | RegExp;
  /** Done just before the text is typed (e.g. a file another process waits for). */
  before?: () => void;
  /** What is typed (end a line with `\r`, the terminal's Enter, or `\n`). */
  text: string;
}

/** How runOnTerminal runs its command. */
export interface TerminalOptions {
  env: NodeJS.ProcessEnv;
  /** Typed in order, each once the output so far shows its `when`. */
  steps: TerminalStep[];
  /** script(1) is SIGKILLed after this long (default 60 s). */
  timeoutMs?: number;
}

/**
 * Runs a shell command (sh) on a pseudo-terminal of its own (script(1)), types each step's text
 * once the terminal shows what the step waits for, and resolves with everything the terminal
 * showed and script's exit code, which `-e` makes the command's.
 */
export function runOnTerminal(
  shellCmd: string,
  opts: TerminalOptions,
): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    // script runs the command with $SHELL: the commands given here are sh.
    const p = spawn('script', ['-qec', shellCmd, '/dev/null'], { env: { ...opts.env, SHELL: '/bin/sh' } });
    const bound = setTimeout(() => p.kill('SIGKILL'), opts.timeoutMs ?? 60_000);
    let out = '';
    let next = 0;
    const type = () => {
      for (let step = opts.steps[next]; step; step = opts.steps[next]) {
        const shown =
          step.when === undefined ||
          (typeof step.when === 'string' ? out.includes(step.when) : step.when.test(out));
        if (!shown) return;
        step.before?.();
        p.stdin.write(step.text);
        next++;
      }
    };
    // Typing into a command that already ended (EPIPE) is no failure: its output and code tell.
    p.stdin.on('error', () => undefined);
    p.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      type();
    });
    type();
    p.on('exit', (code) => {
      clearTimeout(bound);
      resolve({ code, out });
    });
  });
}
