import { BerthError, Code, toBerthError } from '@berth/api';
import type { TaskPort } from './ports.js';

/** How long a SIGKILLed task may take to be reported stopped. */
const KILL_WAIT_MS = 30_000;

/**
 * Swallows the errors that mean "already gone or already stopped" (NOT_FOUND, FAILED_PRECONDITION);
 * a kill that failed (INTERNAL, runc's message) is thrown, as containerd's StopContainer does.
 */
export async function ignoreGone(p: Promise<unknown>): Promise<void> {
  try {
    await p;
  } catch (err) {
    const e = toBerthError(err);
    if (e.code === Code.NOT_FOUND || e.code === Code.FAILED_PRECONDITION) return;
    throw e;
  }
}

/**
 * Stops a container's task: `signal`, then SIGKILL once `timeoutMs` passed (at once when 0).
 * A container without a live task is already stopped: success, as the CRI wants it idempotent.
 */
export async function stopTask(
  tasks: TaskPort,
  id: string,
  opts: { timeoutMs: number; signal: string },
): Promise<void> {
  const info = await tasks.getContainer(id);
  if (!info.task || info.task.status === 'stopped') return;
  if (opts.timeoutMs > 0 && opts.signal !== 'SIGKILL') {
    await ignoreGone(tasks.kill({ id, signal: opts.signal }));
    try {
      await tasks.wait(id, { timeoutMs: opts.timeoutMs });
      return;
    } catch (err) {
      if (toBerthError(err).code !== Code.DEADLINE_EXCEEDED) throw err;
    }
  }
  // all: also the processes the main one left behind in its namespace (as containerd's CRI).
  await ignoreGone(tasks.kill({ id, signal: 'SIGKILL', all: true }));
  try {
    await tasks.wait(id, { timeoutMs: KILL_WAIT_MS });
  } catch (err) {
    const e = toBerthError(err);
    if (e.code === Code.FAILED_PRECONDITION || e.code === Code.NOT_FOUND) return;
    if (e.code === Code.DEADLINE_EXCEEDED) {
      throw new BerthError(
        Code.DEADLINE_EXCEEDED,
        `container ${id} did not stop within ${KILL_WAIT_MS}ms of SIGKILL`,
      );
    }
    throw e;
  }
}
