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

/** What runOnTerminal does once the command shows a prompt. */
export interface TerminalOptions {
  env: NodeJS.ProcessEnv;
  /** Output that means the command waits for input... */
  prompt: string;
  /** ...and what is then typed (end it with `\r`, the terminal's Enter). */
  input: string;
  /** script(1) is SIGKILLed after this long (default 60 s). */
  timeoutMs?: number;
}

/**
 * Runs a shell command on a pseudo-terminal of its own (script(1)), types `input` once its output
 * first contains `prompt`, and resolves with everything the terminal showed and script's exit
 * code, which `-e` makes the command's.
 */
export function runOnTerminal(
  shellCmd: string,
  opts: TerminalOptions,
): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const p = spawn('script', ['-qec', shellCmd, '/dev/null'], { env: opts.env });
    const bound = setTimeout(() => p.kill('SIGKILL'), opts.timeoutMs ?? 60_000);
    let out = '';
    let typed = false;
    p.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (!typed && out.includes(opts.prompt)) {
        typed = true;
        p.stdin.write(opts.input);
      }
    });
    p.on('exit', (code) => {
      clearTimeout(bound);
      resolve({ code, out });
    });
  });
}
