import { BerthError, Code, type ExitStatus, TaskApi, type TaskExit, TaskTopic } from '@berth/api';
import { subscribeEvents } from '@berth/kit/events';
import type { Scope } from './scope.js';

/** How often a waiter asks the task's state again, in case an exit event was lost. */
const RECHECK_MS = 2_000;

/** Options of a wait. */
export interface WaitOptions {
  /** Wait for this exec process instead of the task's main process. */
  execId?: string;
  /** Fail with DEADLINE_EXCEEDED after this long. */
  timeoutMs?: number;
  /** Stop waiting (the promise rejects with CANCELLED). */
  signal?: AbortSignal;
}

/** A wait that is already listening: `exited` resolves with the process's exit. */
export interface ExitWaiter {
  readonly exited: Promise<ExitStatus>;
  close(): void;
}

/**
 * Starts waiting for the exit of a process of the container with full id `id`. It subscribes to
 * `tasks.exit` first, then asks the state, and asks it again every 2 s: core NATS is at-most-once,
 * so the persisted state, not the event, is the source of truth. Start it before the process.
 */
export async function exitWaiter(scope: Scope, id: string, o: WaitOptions = {}): Promise<ExitWaiter> {
  let resolve!: (e: ExitStatus) => void;
  let reject!: (err: unknown) => void;
  const exited = new Promise<ExitStatus>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  exited.catch(() => undefined);
  const sub = subscribeEvents(scope.nc, TaskTopic.taskExit, (env) => {
    const e = env.event as TaskExit;
    if (env.namespace !== scope.namespace || e.id !== id || (e.execId ?? undefined) !== o.execId) return;
    resolve({ exitCode: e.exitCode, exitedAt: e.exitedAt, ...(e.reason ? { reason: e.reason } : {}) });
  });
  await scope.nc.flush();
  let checking = false;
  const check = () => {
    if (checking) return;
    checking = true;
    scope
      .call(TaskApi, 'state', { id, ...(o.execId ? { execId: o.execId } : {}) })
      .then((s) => {
        if (s.status === 'stopped' && s.exitCode !== undefined) {
          resolve({
            exitCode: s.exitCode,
            exitedAt: s.exitedAt ?? '',
            ...(s.reason ? { reason: s.reason } : {}),
          });
        }
      })
      .catch((err: unknown) => {
        // A process that is gone for good will never exit; a restarting service will answer later.
        if (err instanceof BerthError && err.code === Code.NOT_FOUND) reject(err);
      })
      .finally(() => {
        checking = false;
      });
  };
  const timer = setInterval(check, RECHECK_MS);
  const deadline =
    o.timeoutMs !== undefined
      ? setTimeout(
          () =>
            reject(
              new BerthError(
                Code.DEADLINE_EXCEEDED,
                `container "${id}"${o.execId ? ` exec "${o.execId}"` : ''} did not exit within ${o.timeoutMs} ms`,
              ),
            ),
          o.timeoutMs,
        )
      : undefined;
  const onAbort = () => reject(new BerthError(Code.CANCELLED, `wait for container "${id}" was cancelled`));
  o.signal?.addEventListener('abort', onAbort, { once: true });
  if (o.signal?.aborted) onAbort();
  const close = () => {
    clearInterval(timer);
    clearTimeout(deadline);
    o.signal?.removeEventListener('abort', onAbort);
    sub.unsubscribe();
  };
  void exited.then(close, close);
  check();
  return { exited, close };
}
