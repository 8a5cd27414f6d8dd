import { BerthError, Code, TaskApi } from '@berth/api';
import { client as clientOf } from '@berth/kit/client';
import { describeAnswer, type ExitWaiter } from '@berth/kit/exit-waiter';
import type { CliContext } from '../context.js';
import { nodeError } from '../nodes.js';
import { exitWatcher } from './api.js';

// `berth stop` (and `berth down --containers`): the stop signal, SIGKILL after the grace period,
// then a bounded wait for the exit the task-service records.

/** How long `stop` waits for the exit once SIGKILL went out, before it gives up saying why. */
const KILL_WAIT_MS = 30_000;
/** How often `stop` sends SIGKILL again meanwhile (one that was lost on its way, say). */
const KILL_RESEND_MS = 5_000;

/** Options of stopOne. */
export interface StopOptions {
  /** The grace period: seconds between the stop signal and SIGKILL. */
  seconds: number;
  /** The container's namespace (the context's unless set). */
  namespace?: string;
  /** How long to wait for the exit after the first SIGKILL (30 s unless set). */
  killWaitMs?: number;
  /** How often SIGKILL is sent again while waiting (every 5 s unless set). */
  killResendMs?: number;
}

/**
 * `stop [-t N]`: the stop signal, then SIGKILL after the grace period, sent again every
 * `killResendMs` until the exit is seen; after `killWaitMs` it fails with DEADLINE_EXCEEDED naming
 * the container and what the services last answered, rather than waiting forever.
 */
export async function stopOne(ref: string, ctx: CliContext, opts: StopOptions): Promise<string> {
  const namespace = opts.namespace ?? ctx.namespace;
  const client = clientOf(await ctx.nats(), TaskApi, { namespace });
  const info = await client['get-container']({ id: ref });
  if (info.status !== 'running' && info.status !== 'paused' && info.status !== 'created') return ref;
  if (!info.task) return ref;
  const id = info.container.id;
  const w = await exitWatcher(ctx, id, undefined, namespace);
  /**
   * The last kill the task-service refused as "not running" (FAILED_PRECONDITION): the exit is
   * then waited for. A SIGKILL that failed (INTERNAL: runc could not signal the container) ends
   * the stop with its error, since the container may well still run.
   */
  let refused: BerthError | undefined;
  try {
    w.check();
    const killQuiet = (signal: string, all: boolean) =>
      client.kill({ id, signal, all }).catch((err: unknown) => {
        if (err instanceof BerthError && err.code === Code.FAILED_PRECONDITION) {
          refused = err;
          return;
        }
        // The container's node does not answer: say which one.
        throw nodeError(info.container.node, err);
      });
    if (info.status === 'created') await killQuiet('SIGKILL', true);
    else {
      // A stop signal the kernel has no such thing as (an image's StopSignal, an old record), or
      // one runc failed to send (INTERNAL), must not keep the container running: it is stopped
      // with SIGKILL, as after the grace period (Docker's stop goes on to its kill alike). A
      // SIGKILL that fails too ends the stop with that error.
      await killQuiet(info.container.stopSignal, false).catch(async (err: unknown) => {
        if (
          !(err instanceof BerthError) ||
          (err.code !== Code.INVALID_ARGUMENT && err.code !== Code.INTERNAL)
        ) {
          throw err;
        }
        ctx.err.write(`${ref}: stop signal ${info.container.stopSignal}: ${err.message}; sending SIGKILL\n`);
        await killQuiet('SIGKILL', true);
      });
    }
    if ((await within(w.exited, opts.seconds * 1000)) === TIMED_OUT) {
      await killQuiet('SIGKILL', true);
      await awaitKilled(ref, w, {
        waitMs: opts.killWaitMs ?? KILL_WAIT_MS,
        resendMs: opts.killResendMs ?? KILL_RESEND_MS,
        resend: () => client.kill({ id, signal: 'SIGKILL', all: true }),
        refused,
      });
    }
  } finally {
    w.close();
  }
  return ref;
}

const TIMED_OUT = Symbol('timed out');

/** `p`'s value, or TIMED_OUT once `ms` passed first. */
async function within<T>(p: Promise<T>, ms: number): Promise<T | typeof TIMED_OUT> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<typeof TIMED_OUT>((r) => {
    timer = setTimeout(() => r(TIMED_OUT), ms);
  });
  try {
    return await Promise.race([p, late]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Waits for the exit of a container SIGKILL was sent to, sending it again every `resendMs`: a
 * kill can be lost on its way (a service restarting under it) or refused for a reason other than
 * "not running". Gives up after `waitMs` with DEADLINE_EXCEEDED naming the container, the state
 * the task-service last answered and the last kill's error, if it failed.
 */
async function awaitKilled(
  ref: string,
  w: ExitWaiter,
  o: { waitMs: number; resendMs: number; resend: () => Promise<unknown>; refused: BerthError | undefined },
): Promise<void> {
  let sent = 1;
  let failed = o.refused;
  let inflight: Promise<void> | undefined;
  // Not awaited by the wait: a kill that takes its whole timeout must not hold back an exit seen meanwhile.
  const resend = () => {
    if (inflight) return;
    sent++;
    inflight = o
      .resend()
      .then(
        () => {
          failed = undefined;
        },
        (err: unknown) => {
          // Kept for the message; the wait goes on (a refusal may mean it stopped, which its state tells).
          if (err instanceof BerthError) failed = err;
        },
      )
      .finally(() => {
        inflight = undefined;
      });
  };
  const timer = setInterval(resend, o.resendMs);
  try {
    if ((await within(w.exited, o.waitMs)) !== TIMED_OUT) return;
  } finally {
    clearInterval(timer);
    // A kill still on its way is answered before stop returns: it must not reach a container
    // started again right after (`berth stop x && berth start x`), nor go uncounted below.
    await inflight;
  }
  throw new BerthError(
    Code.DEADLINE_EXCEEDED,
    `container "${ref}" did not exit within ${o.waitMs / 1000} s of SIGKILL (sent ${sent} ` +
      `time${sent === 1 ? '' : 's'}); ${describeAnswer(w.lastAnswer())}` +
      (failed ? `; the last kill failed: ${failed.code}: ${failed.message}` : ''),
  );
}
