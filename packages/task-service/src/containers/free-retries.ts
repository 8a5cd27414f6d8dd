import { BerthError, Code, type Container } from '@berth/api';
import { type BackoffStep, PassBackoff } from '@berth/kit';

/** The reconcile's interval when none is set (the default of reconcileIntervalMs), ms. */
export const DEFAULT_RECONCILE_MS = 30_000;

/** The longest a container whose freeing keeps failing waits between tries, ms. */
export const FREE_BACKOFF_MAX_MS = 5 * 60_000;

/**
 * Codes of a failed freeing that say nothing about the container: its node's shim or
 * snapshot-service is not reachable (no responders, the NATS connection lost) or is stopping, or
 * the container's lock was lost (Redis away). Errors that are not BerthErrors come from this
 * replica's Redis client. DEADLINE_EXCEEDED is not among them: a service that answers nothing in
 * time (a runc that hangs) holds every pass that asks it for the whole timeout.
 */
const TRANSIENT: ReadonlySet<Code> = new Set([Code.UNAVAILABLE, Code.ABORTED, Code.CANCELLED]);

/**
 * The DEADLINE_EXCEEDED of a wait for a container's lock that another holder (a removal request,
 * another replica) kept (see ContainerManager.lock): the same code and message on the wire, but
 * it says nothing about the container's node, so a freeing that failed with it is transient.
 */
export class LockWaitExceeded extends BerthError {
  constructor(err: BerthError) {
    super(Code.DEADLINE_EXCEEDED, err.message, { cause: err });
  }
}

/**
 * True when a freeing failed for a reason that is not the container's (see TRANSIENT, and a wait
 * for its lock, LockWaitExceeded): it is tried again in the next pass, as before, rather than
 * backed off.
 */
export function transientFailure(err: unknown): boolean {
  return !(err instanceof BerthError) || err instanceof LockWaitExceeded || TRANSIENT.has(err.code);
}

/** Where FreeRetries.attempt reports what came of a container it tried. */
export interface FreeReport {
  /** A freeing failed; `backoff` says after how many passes it is tried again (undefined: the next). */
  onError(err: unknown, c: Container, backoff: BackoffStep | undefined): void;
  /** A container was freed after `failures` failures in a row that were backed off. */
  recovered?(c: Container, failures: number): void;
}

/** The log fields of a back-off step: none for a transient failure (tried in the next pass). */
export function backoffFields(b: BackoffStep | undefined): { failures?: number; retryInPasses?: number } {
  return b ? { failures: b.failures, retryInPasses: b.waitPasses } : {};
}

/**
 * Which containers the reconcile tries to free on their nodes in a pass, one instance per kind of
 * work: the collections of containers removed in the background (see collectAll), the removals
 * that stopped half-way (see reconcileAll). A freeing the node refuses or fails (runc cannot
 * delete the task: a broken state.json; a snapshot that will not go) is not tried every pass: the
 * container waits 1, 2, 4 ... passes, at most FREE_BACKOFF_MAX_MS' worth of the reconcile
 * interval, and each try is logged once. A success, or the record written again (updated, or
 * another container under the id), starts afresh; entries of containers the pass no longer found
 * are dropped at its end. A transient failure (transientFailure) is not counted: the container is
 * tried again in the next pass.
 */
export class FreeRetries {
  private readonly backoff = new PassBackoff({
    maxWaitMs: FREE_BACKOFF_MAX_MS,
    intervalMs: DEFAULT_RECONCILE_MS,
  });
  /** The containers this pass has seen, in every namespace it went through. */
  private seen = new Set<string>();

  /** Sets the reconcile's interval, which turns FREE_BACKOFF_MAX_MS into passes. */
  setInterval(intervalMs: number): void {
    this.backoff.setInterval(intervalMs);
  }

  /** Begins a reconcile pass. */
  beginPass(): void {
    this.backoff.beginPass();
    this.seen = new Set();
  }

  /** Ends a pass that went through every namespace: forgets the containers it did not see. */
  endPass(): void {
    this.backoff.retain(this.seen);
  }

  /** Whether `c` is tried in this pass. */
  due(c: Container): boolean {
    const key = keyOf(c);
    this.seen.add(key);
    return this.backoff.due(key, subjectOf(c));
  }

  /**
   * Records a failed freeing of `c`: the step it was backed off by, or undefined for a transient
   * failure (not counted; `c` is tried in the next pass).
   */
  failed(c: Container, err: unknown): BackoffStep | undefined {
    if (transientFailure(err)) return undefined;
    return this.backoff.failed(keyOf(c), subjectOf(c));
  }

  /** Records that `c` was freed; returns how many failures in a row that ends (0: none). */
  succeeded(c: Container): number {
    return this.backoff.succeeded(keyOf(c));
  }

  /**
   * Frees `c` with `free` when it is due; true when it was freed. `free` resolves false when there
   * was nothing to do (neither a success nor a failure), and throws on a failure, which is recorded
   * (see failed) and reported; a success after backed-off failures is reported as recovered.
   */
  async attempt(c: Container, free: () => Promise<boolean>, report: FreeReport): Promise<boolean> {
    if (!this.due(c)) return false;
    try {
      if (!(await free())) return false;
    } catch (err) {
      report.onError(err, c, this.failed(c, err));
      return false;
    }
    const failures = this.succeeded(c);
    if (failures > 0) report.recovered?.(c, failures);
    return true;
  }
}

function keyOf(c: Container): string {
  return `${c.namespace}/${c.id}`;
}

/**
 * The version of a container's record: an update writes another one, and so does another
 * container (or another removal in the background) under the id.
 */
function subjectOf(c: Container): string {
  return `${c.createdAt}/${c.updatedAt}`;
}
