import type { ExitStatus, TaskExit } from '@berth/api';

type Waiter = (e: TaskExit) => void;

/**
 * In-memory waiters for process exits, fed by the `tasks.exit` subscription. A wait registers here
 * before it reads the persisted state, so an exit landing in between is never lost.
 */
export class ExitWaiters {
  private readonly waiters = new Map<string, Set<Waiter>>();

  static key(ns: string, id: string, execId?: string): string {
    return `${ns}/${id}/${execId ?? ''}`;
  }

  /** Registers a waiter; returns its promise and a cancel function. */
  register(key: string): { exited: Promise<ExitStatus>; cancel: () => void } {
    let resolve!: (s: ExitStatus) => void;
    const exited = new Promise<ExitStatus>((r) => {
      resolve = r;
    });
    const cancel = this.watch(key, (e) => {
      const status: ExitStatus = { exitCode: e.exitCode, exitedAt: e.exitedAt };
      if (e.reason) status.reason = e.reason;
      resolve(status);
    });
    return { exited, cancel };
  }

  /**
   * Calls fn, synchronously, with the next exit of the process (the whole event: its pid tells
   * one run from another); returns the function that cancels the watch.
   */
  watch(key: string, fn: (e: TaskExit) => void): () => void {
    let set = this.waiters.get(key);
    if (!set) {
      set = new Set();
      this.waiters.set(key, set);
    }
    set.add(fn);
    return () => {
      const s = this.waiters.get(key);
      s?.delete(fn);
      if (s?.size === 0) this.waiters.delete(key);
    };
  }

  /** Wakes every waiter of the process that exited. */
  notify(e: TaskExit): void {
    const key = ExitWaiters.key(e.namespace, e.id, e.execId);
    const set = this.waiters.get(key);
    if (!set) return;
    this.waiters.delete(key);
    for (const w of set) w(e);
  }

  size(): number {
    return this.waiters.size;
  }
}
