import { constants, openSync, readSync, unlinkSync } from 'node:fs';
import { Socket } from 'node:net';
import { join } from 'node:path';
import { BerthError, Code } from '@berth/api';
import { procStat } from './monitor.js';

/** The file runc's init blocks on until the container is started (runc's name for it). */
export const EXEC_FIFO = 'exec.fifo';

/** How often the wait checks that the init still lives (runc start checks every 100 ms too). */
const LIVENESS_MS = 100;

/**
 * Longest wait for the init's byte. A live init that never writes (its fifo left behind by a start
 * that died between reading and removing it) would be waited on for ever, as by `runc start`.
 */
const START_TIMEOUT_MS = 30_000;

/** What a start through the fifo found. */
export type FifoStart = 'started' | 'no-fifo';

/**
 * Starts a container that `runc create` left created, as `runc start` does, without spawning
 * runc: the init waits in an open() of `<runc root>/<id>/exec.fifo` for a reader; opening it lets
 * the init write one byte and exec the container's process (closing the fifo: end of file). The
 * fifo is removed afterwards, which is how runc tells created from running. `no-fifo` when the
 * file is not there (another runtime, or no longer created): the caller runs `runc start`, whose
 * answer names the reason. The caller holds the task's lock, so no second start races this one.
 */
export async function startThroughFifo(
  runcRoot: string,
  id: string,
  initPid: number,
  timeoutMs = START_TIMEOUT_MS,
): Promise<FifoStart> {
  const path = join(runcRoot, id, EXEC_FIFO);
  let fd: number;
  try {
    // Non-blocking: a reader's open of a fifo returns at once, and the init's pending open for
    // writing completes as soon as there is a reader. Inline: a thread-pool trip would only add
    // a wait behind the pool's other work on the path of every start.
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 'no-fifo';
    throw err;
  }
  // A socket over the fifo waits in epoll: a fifo that never had a writer reports neither data nor
  // hang-up, so the wait lasts until the init writes and then execs (end of file) or dies.
  const fifo = new Socket({ fd, readable: true, writable: false });
  let got = 0;
  try {
    await new Promise<void>((resolve, reject) => {
      const alive = setInterval(() => {
        void isDead(initPid).then((dead) => {
          if (!dead) return;
          // It may have started, run and exited between two checks: its byte is then either read
          // already or still in the fifo (a read never waits here: the fd is non-blocking).
          clearInterval(alive);
          clearTimeout(deadline);
          if (got > 0 || pendingByte(fd)) resolve();
          else reject(new BerthError(Code.FAILED_PRECONDITION, `task "${id}": its process is already dead`));
        });
      }, LIVENESS_MS);
      const deadline = setTimeout(
        () =>
          fail(
            new BerthError(
              Code.DEADLINE_EXCEEDED,
              `task "${id}": its init did not answer on ${EXEC_FIFO} within ${timeoutMs} ms`,
            ),
          ),
        timeoutMs,
      );
      const fail = (err: Error) => {
        clearInterval(alive);
        clearTimeout(deadline);
        reject(err);
      };
      fifo.on('data', (b: Buffer) => {
        got += b.length;
      });
      fifo.on('error', fail);
      fifo.on('end', () => {
        clearInterval(alive);
        clearTimeout(deadline);
        if (got > 0) resolve();
        else
          reject(
            new BerthError(
              Code.FAILED_PRECONDITION,
              `task "${id}": cannot start an already running container`,
            ),
          );
      });
    });
  } finally {
    // The socket owns the descriptor now: destroying it closes it.
    fifo.destroy();
  }
  unlinkSync(path);
  return 'started';
}

/** True when a byte waits in the non-blocking fifo. */
function pendingByte(fd: number): boolean {
  try {
    return readSync(fd, Buffer.alloc(1)) > 0;
  } catch {
    return false;
  }
}

/** True when the process is gone or a zombie (exited, not yet reaped by its monitor). */
async function isDead(pid: number): Promise<boolean> {
  const st = await procStat(pid);
  return st === undefined || st.state === 'Z';
}
