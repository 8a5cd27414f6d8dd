/** What a failure recorded by PassBackoff.failed led to. */
export interface BackoffStep {
  /** Failures in a row, this one included. */
  failures: number;
  /** Passes skipped before the next try. */
  waitPasses: number;
}

interface Entry {
  /** What the key stood for when it failed (a task's start, a record's version): another one starts afresh. */
  subject: string;
  failures: number;
  /** The first pass that tries again. */
  retryAt: number;
}

/**
 * Exponential back-off counted in reconcile passes, one per key (a shim's task, a removed container
 * the task-service frees): after the n-th failure in a row, 2^(n-1) passes are skipped (1, 2, 4 ...),
 * at most as many as make `maxWaitMs` at the passes' interval. A success ends it, and so does a
 * change of what the key stands for (another task under the same id, a record written again), so
 * only a failure that keeps failing is tried less often; and a caller logs it once per try, not
 * once per pass.
 */
export class PassBackoff {
  private pass = 0;
  private readonly entries = new Map<string, Entry>();
  private readonly maxWaitMs: number;
  /** The longest wait, in passes (at least one): maxWaitMs at the passes' interval. */
  private maxWait = 1;

  /** `maxWaitMs`: the longest wait, in time; `intervalMs`: how often passes run (see setInterval). */
  constructor(o: { maxWaitMs: number; intervalMs: number }) {
    this.maxWaitMs = o.maxWaitMs;
    this.setInterval(o.intervalMs);
  }

  /** Sets how often passes run, which turns the longest wait into passes (at least one). */
  setInterval(intervalMs: number): void {
    this.maxWait = Math.max(1, Math.floor(this.maxWaitMs / intervalMs));
  }

  /** Begins the next pass. Failures recorded before the first (at startup) count as pass 0's. */
  beginPass(): void {
    this.pass++;
  }

  /** Whether `key` may be tried in this pass: nothing failed, its wait is over, or `subject` changed. */
  due(key: string, subject: string): boolean {
    const e = this.entries.get(key);
    if (e && e.subject !== subject) this.entries.delete(key);
    return !e || e.subject !== subject || this.pass >= e.retryAt;
  }

  /** Records a failure of `key` in this pass and sets when it is tried next. */
  failed(key: string, subject: string): BackoffStep {
    const before = this.entries.get(key);
    const failures = before && before.subject === subject ? before.failures + 1 : 1;
    const waitPasses = Math.min(2 ** Math.min(failures - 1, 30), this.maxWait);
    this.entries.set(key, { subject, failures, retryAt: this.pass + waitPasses + 1 });
    return { failures, waitPasses };
  }

  /** Records a success of `key`; returns how many failures in a row it ends (0: none). */
  succeeded(key: string): number {
    const failures = this.entries.get(key)?.failures ?? 0;
    this.entries.delete(key);
    return failures;
  }

  /** Forgets every key but those in `keep` (what was removed since it failed). */
  retain(keep: ReadonlySet<string>): void {
    for (const key of this.entries.keys()) if (!keep.has(key)) this.entries.delete(key);
  }
}
