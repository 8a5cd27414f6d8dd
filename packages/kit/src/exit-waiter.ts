import {
  BerthError,
  Code,
  type ExitStatus,
  type ProcessState,
  TaskApi,
  type TaskExit,
  TaskTopic,
} from '@berth/api';
import type { NatsConnection } from 'nats';
import { call } from './client.js';
import { subscribeEvents } from './events.js';

/** How often a waiter asks the task's state again, in case an exit event was lost. */
const DEFAULT_RECHECK_MS = 1_000;

/** What to wait for, and for how long. */
export interface ExitWaitOptions {
  /** The namespace of the container. */
  namespace: string;
  /** The container's full id. */
  id: string;
  /** Wait for this exec process instead of the task's main process. */
  execId?: string;
  /** Fail with DEADLINE_EXCEEDED after this long. */
  timeoutMs?: number;
  /** Stop waiting (the promise rejects with CANCELLED). */
  signal?: AbortSignal;
  /**
   * Whether to ask the state at once (default). A caller that starts waiting before the process
   * exists (before task create or exec start) passes false and calls `check()` once it started:
   * until then "no such task" is expected, not an answer.
   */
  checkNow?: boolean;
  /** How often the state is asked again; 1 s unless set. */
  recheckMs?: number;
}

/** What the task-service last answered a waiter's state call: the state, or the error. */
export type WaitAnswer = { at: number } & ({ state: ProcessState } | { error: BerthError });

/**
 * One line on what a waiter last heard, for an error that gives up on it: `last state running
 * (pid 42, 0.4 s ago)`, `last answer UNAVAILABLE: ... (2.1 s ago)`, or `no state answered yet`.
 */
export function describeAnswer(a: WaitAnswer | undefined, now = Date.now()): string {
  if (!a) return 'no state answered yet';
  const ago = `${((now - a.at) / 1000).toFixed(1)} s ago`;
  if ('error' in a) return `last answer ${a.error.code}: ${a.error.message} (${ago})`;
  const s = a.state;
  const exit = s.exitCode !== undefined ? `, exit code ${s.exitCode}` : '';
  return `last state ${s.status} (pid ${s.pid}${exit}, ${ago})`;
}

/** A wait that is already listening: `exited` resolves with the process's exit. */
export interface ExitWaiter {
  readonly exited: Promise<ExitStatus>;
  /** What the task-service last answered a state call (undefined before the first answer). */
  lastAnswer(): WaitAnswer | undefined;
  /**
   * Asks the recorded state now, and from now on every `recheckMs`. With `now: false` the first
   * ask waits a `recheckMs`: for a waiter listening since before the process existed (its exit
   * event cannot have gone by before it subscribed), asking at once only costs the services a
   * state call while the process starts; a lost event is still caught by the next ask.
   */
  check(opts?: { now?: boolean }): void;
  /** Stops listening; `exited` stays pending if it had not settled. */
  close(): void;
}

/**
 * Starts waiting for the exit of a container's task or exec process without a lost wakeup: it
 * subscribes to `tasks.exit` first, then asks the task-service for the state, again and again,
 * because core NATS is at-most-once and the persisted state, not the event, is the truth. Once
 * checking started, NOT_FOUND rejects (the process is gone and will never exit); UNAVAILABLE and
 * other transient errors are asked again later, so a restarting task-service never loses a wait.
 * A connection that closed for good (one made without reconnects, as the CLI's, whose server went
 * away) rejects with UNAVAILABLE: nothing could ever answer on it, and the wait would never end.
 */
export async function exitWaiter(nc: NatsConnection, o: ExitWaitOptions): Promise<ExitWaiter> {
  const { namespace, id, execId } = o;
  let resolve!: (e: ExitStatus) => void;
  let reject!: (err: unknown) => void;
  const exited = new Promise<ExitStatus>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  exited.catch(() => undefined);
  const what = `container "${id}"${execId ? ` exec "${execId}"` : ''}`;
  const sub = subscribeEvents(nc, TaskTopic.taskExit, (env) => {
    const e = env.event as TaskExit;
    if (e.namespace !== namespace || e.id !== id || (e.execId ?? undefined) !== execId) return;
    resolve({ exitCode: e.exitCode, exitedAt: e.exitedAt, ...(e.reason ? { reason: e.reason } : {}) });
  });
  await nc.flush();
  let asking = false;
  let last: WaitAnswer | undefined;
  // Set by close(): a connection its owner closes after the wait must not fail it.
  let closed = false;
  const lost = (cause?: unknown) => {
    if (closed) return;
    reject(
      new BerthError(
        Code.UNAVAILABLE,
        `the NATS connection closed while waiting for ${what} to exit (${describeAnswer(last)})`,
        cause === undefined ? undefined : { cause },
      ),
    );
  };
  const ask = () => {
    if (asking) return;
    if (nc.isClosed()) {
      lost();
      return;
    }
    asking = true;
    call(nc, TaskApi, 'state', { id, ...(execId ? { execId } : {}) }, { namespace })
      .then((s) => {
        last = { at: Date.now(), state: s };
        if (s.status === 'stopped' && s.exitCode !== undefined) {
          resolve({
            exitCode: s.exitCode,
            exitedAt: s.exitedAt ?? '',
            ...(s.reason ? { reason: s.reason } : {}),
          });
        }
      })
      .catch((err: unknown) => {
        // The closed connection's own error says nothing of the task: the answer before it does.
        if (nc.isClosed()) return lost(err);
        if (err instanceof BerthError) last = { at: Date.now(), error: err };
        if (err instanceof BerthError && err.code === Code.NOT_FOUND) reject(err);
      })
      .finally(() => {
        asking = false;
      });
  };
  let timer: NodeJS.Timeout | undefined;
  const check = (opts?: { now?: boolean }) => {
    timer ??= setInterval(ask, o.recheckMs ?? DEFAULT_RECHECK_MS);
    if (opts?.now !== false) ask();
  };
  const deadline =
    o.timeoutMs !== undefined
      ? setTimeout(
          () =>
            reject(
              new BerthError(
                Code.DEADLINE_EXCEEDED,
                `${what} did not exit within ${o.timeoutMs} ms (${describeAnswer(last)})`,
              ),
            ),
          o.timeoutMs,
        )
      : undefined;
  const onAbort = () => reject(new BerthError(Code.CANCELLED, `wait for ${what} was cancelled`));
  o.signal?.addEventListener('abort', onAbort, { once: true });
  if (o.signal?.aborted) onAbort();
  const close = () => {
    closed = true;
    clearInterval(timer);
    clearTimeout(deadline);
    o.signal?.removeEventListener('abort', onAbort);
    sub.unsubscribe();
  };
  void exited.then(close, close);
  if (o.checkNow !== false) check();
  return { exited, check, close, lastAnswer: () => last };
}
