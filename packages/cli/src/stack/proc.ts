import { accessSync, constants, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

/** Finds an executable on a PATH string, like `command -v`; undefined when absent. */
export function which(cmd: string, path: string = process.env.PATH ?? ''): string | undefined {
  for (const dir of path.split(':')) {
    if (!dir) continue;
    const candidate = join(dir, cmd);
    try {
      accessSync(candidate, constants.X_OK);
      if (statSync(candidate).isFile()) return candidate;
    } catch {
      // not here; keep looking
    }
  }
  return undefined;
}

// True when a process with this pid exists (zombies included; signal 0 only checks).
export { pidAlive } from '@berth/kit/pid-alive';

/** The command line of a process, or undefined when it is gone. */
export function cmdline(pid: number): string[] | undefined {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
  } catch {
    return undefined;
  }
}

/**
 * True when `pid` still runs the program recorded for it: guards against signalling an unrelated
 * process that reused the pid of one that died while nobody was watching.
 */
export function isSameProcess(pid: number, marker: string): boolean {
  const argv = cmdline(pid);
  // redis-server rewrites its title to "redis-server 127.0.0.1:6379": compare the first word.
  const matches = (a: string) => {
    const word = a.split(' ')[0] ?? '';
    return word === marker || word.endsWith(`/${marker}`);
  };
  return argv?.some(matches) ?? false;
}

/** True when the process is gone or a zombie (exited, waiting for its parent to reap it). */
export function exited(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The state follows the parenthesised command name, which may itself contain spaces.
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state === 'Z' || state === 'X';
  } catch {
    return true;
  }
}

/**
 * Sends SIGTERM to a process that is not our child, waits until it is gone, and sends SIGKILL
 * after `graceMs`. Polls /proc because only a parent can wait on a pid.
 */
export async function terminatePid(pid: number, graceMs: number): Promise<'exited' | 'killed'> {
  if (exited(pid)) return 'exited';
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return 'exited';
  }
  const deadline = Date.now() + graceMs;
  while (Date.now() < deadline) {
    if (exited(pid)) return 'exited';
    await sleep(50);
  }
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    return 'exited';
  }
  // SIGKILL cannot be caught; only a process stuck in the kernel outlives this bound.
  const hard = Date.now() + 10_000;
  while (!exited(pid) && Date.now() < hard) await sleep(20);
  return 'killed';
}
