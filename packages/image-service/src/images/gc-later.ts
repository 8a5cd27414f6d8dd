import { keys, type Logger, type Redis } from '@berth/kit';

// Drops a namespace's entry only if no removal bumped it since the collection began.
const DROP_IF_UNCHANGED = `if redis.call('hget', KEYS[1], ARGV[1]) == ARGV[2] then return redis.call('hdel', KEYS[1], ARGV[1]) else return 0 end`;

/** A collection waiting for the removals to go quiet. */
interface Due {
  timer: NodeJS.Timeout | undefined;
  /** When the first request it holds came: the wait never goes beyond `delayMs * MAX_DELAYS` from it. */
  firstAt: number;
  /** Settles when the collection it starts has finished (idle waits on it). */
  done: Promise<void>;
  start: () => void;
}

/** How many times `delayMs` a stream of removals may hold a collection back. */
const MAX_DELAYS = 10;

/**
 * Garbage collection run after a removal's reply rather than in it (as containerd's CRI leaves
 * content removal to its collector). Each request is noted in Redis first (keys.gcPending), and
 * the note goes only once a collection that began after it has finished: a collection a crash
 * interrupted, or one that failed, runs again when the image-service starts (resume), so nothing
 * the removal left unreferenced stays behind. A collection starts once no request came for
 * `delayMs` (at most `delayMs * 10` after the first): a pull right after a removal (the kubelet
 * or critest pulling again) then neither waits for the blob locks GC holds nor fetches blobs GC
 * is deleting under it. Requests arriving while one runs fold into one more run.
 */
export class GcLater {
  private readonly running = new Map<string, Promise<void>>();
  private readonly again = new Set<string>();
  private readonly due = new Map<string, Due>();

  constructor(
    private readonly o: {
      redis: Redis;
      node: string;
      /** One collection of a namespace (content and snapshots). */
      collect: (ns: string) => Promise<unknown>;
      log: Logger;
      /** Quiet time before a collection starts (0: at once). */
      delayMs?: number;
    },
  ) {}

  /** Notes that `ns` needs a collection, then starts one after the caller's reply. */
  async request(ns: string): Promise<void> {
    await this.o.redis.hincrby(keys.gcPending(this.o.node), ns, 1);
    this.kick(ns);
  }

  /** Runs the collections noted and not finished (by a replica that died, or failed). */
  async resume(): Promise<void> {
    for (const ns of await this.o.redis.hkeys(keys.gcPending(this.o.node))) this.kick(ns);
  }

  /** Resolves once no collection of `ns` is running or due (tests, shutdown). */
  async idle(ns: string): Promise<void> {
    for (;;) {
      const wait = this.due.get(ns)?.done ?? this.running.get(ns);
      if (!wait) return;
      await wait;
    }
  }

  /** Starts a collection of `ns` once removals went quiet (see the class). */
  private kick(ns: string): void {
    const delayMs = this.o.delayMs ?? 0;
    if (delayMs === 0) {
      this.runNow(ns);
      return;
    }
    const d = this.due.get(ns) ?? this.newDue(ns);
    clearTimeout(d.timer);
    const wait = Math.min(delayMs, d.firstAt + delayMs * MAX_DELAYS - Date.now());
    d.timer = setTimeout(d.start, Math.max(0, wait));
    // A note in Redis outlives a process that exits first: the next start resumes it.
    d.timer.unref();
  }

  private newDue(ns: string): Due {
    let settle: () => void = () => undefined;
    const d: Due = {
      timer: undefined,
      firstAt: Date.now(),
      done: new Promise<void>((resolve) => {
        settle = resolve;
      }),
      start: () => {
        clearTimeout(d.timer);
        if (this.due.get(ns) !== d) return;
        this.due.delete(ns);
        this.runNow(ns);
        void this.idle(ns).then(settle);
      },
    };
    this.due.set(ns, d);
    return d;
  }

  private runNow(ns: string): void {
    if (this.running.has(ns)) {
      this.again.add(ns);
      return;
    }
    const run = this.runOnce(ns).finally(() => {
      this.running.delete(ns);
      if (this.again.delete(ns)) this.runNow(ns);
    });
    this.running.set(ns, run);
  }

  private async runOnce(ns: string): Promise<void> {
    const key = keys.gcPending(this.o.node);
    try {
      const seen = await this.o.redis.hget(key, ns);
      if (seen === null) return;
      await this.o.collect(ns);
      await this.o.redis.eval(DROP_IF_UNCHANGED, 1, key, ns, seen);
    } catch (err) {
      // The note stays: the next request or start runs it again.
      this.o.log.warn({ err: (err as Error).message, ns }, 'garbage collection after a removal failed');
    }
  }
}
