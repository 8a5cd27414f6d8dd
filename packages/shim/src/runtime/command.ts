import { spawn } from 'node:child_process';
import { runNative } from './spawn-native.js';

/** What a finished helper command left: its exit status and output. */
export interface CommandResult {
  code: number;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** True when it was killed at its deadline (runCommandOffLoop). */
  timedOut?: boolean;
}

/**
 * Runs a short-lived helper (runc, mount, umount) to completion and collects its output. It is
 * never given a shell, and an optional stdin payload is written then closed.
 */
export function runCommand(cmd: string, args: string[], input?: string): Promise<CommandResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout?.on('data', (b: Buffer) => out.push(b));
    child.stderr?.on('data', (b: Buffer) => err.push(b));
    child.on('error', reject);
    child.on('close', (code, signal) =>
      resolve({
        code: code ?? -1,
        signal,
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
      }),
    );
    if (input !== undefined) child.stdin?.end(input);
  });
}

/**
 * runCommand by the spawn addon when it is built and `cmd` is a path: the fork and exec happen in
 * a thread of the addon, not on the event loop, where Node's spawn() forks the whole shim (in the
 * shim's CPU profile of 40 `berth run --rm`, ~3 ms of its loop per `runc delete`). The process
 * runs in a session of its own whose group is SIGKILLed once `deadlineMs` passed (then code -1,
 * timedOut, and stderr says so). Without the addon, or for a bare name, as runCommand.
 */
export async function runCommandOffLoop(
  cmd: string,
  args: string[],
  deadlineMs: number,
  input?: string,
): Promise<CommandResult> {
  const native = cmd.startsWith('/') ? runNative(cmd, process.env, input ?? '', deadlineMs, args) : undefined;
  if (!native) return runCommand(cmd, args, input);
  const { timedOut, ...r } = await native;
  if (!timedOut) return r;
  return { ...r, stderr: `${r.stderr}\n${cmd} did not end within ${deadlineMs} ms: killed\n`, timedOut };
}

/** The last meaningful line of a tool's error output, for messages that name what failed. */
export function lastLine(text: string): string {
  const lines = text
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
  return lines[lines.length - 1] ?? '';
}
