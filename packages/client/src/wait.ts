import type { ExitStatus } from '@berth/api';
import { type ExitWaiter, exitWaiter as kitExitWaiter } from '@berth/kit/exit-waiter';
import type { Scope } from './scope.js';

/** Options of a wait. */
export interface WaitOptions {
  /** Wait for this exec process instead of the task's main process. */
  execId?: string;
  /** Fail with DEADLINE_EXCEEDED after this long. */
  timeoutMs?: number;
  /** Stop waiting (the promise rejects with CANCELLED). */
  signal?: AbortSignal;
}

export type { ExitStatus, ExitWaiter };

/**
 * Starts waiting for the exit of a process of the container with full id `id`, in the scope's
 * namespace: the kit's waiter (event first, then the recorded state, asked again every second),
 * shared with the CLI. A process that does not exist rejects with NOT_FOUND.
 */
export function exitWaiter(scope: Scope, id: string, o: WaitOptions = {}): Promise<ExitWaiter> {
  return kitExitWaiter(scope.nc, { namespace: scope.namespace, id, ...o });
}
