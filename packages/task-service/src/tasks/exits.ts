import type { ExitStatus, TaskExit } from '@berth/api';

type Waiter = (e: ExitStatus) => void;

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
    let fn!: Waiter;
    const exited = new Promise<ExitStatus>((resolve) => {
      fn = resolve;
    });
    let set = this.waiters.get(key);
    if (!set) {
      set = new Set();
      this.waiters.set(key, set);
    }
    set.add(fn);
    const cancel = () => {
      const s = this.waiters.get(key);
      s?.delete(fn);
      if (s?.size === 0) this.waiters.delete(key);
    };
    return { exited, cancel };
  }

  /** Wakes every waiter of the process that exited. */
  notify(e: TaskExit): void {
    const key = ExitWaiters.key(e.namespace, e.id, e.execId);
    const set = this.waiters.get(key);
    if (!set) return;
    this.waiters.delete(key);
    const status: ExitStatus = { exitCode: e.exitCode, exitedAt: e.exitedAt };
    if (e.reason) status.reason = e.reason;
    for (const w of set) w(status);
  }

  size(): number {
    return this.waiters.size;
  }
}
