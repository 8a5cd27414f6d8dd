import { keys, type Logger, type Redis } from '@berth/kit';

// Drops a namespace's entry only if no removal bumped it since the collection began.
const DROP_IF_UNCHANGED = `if redis.call('hget', KEYS[1], ARGV[1]) == ARGV[2] then return redis.call('hdel', KEYS[1], ARGV[1]) else return 0 end`;

/**
 * Garbage collection run after a removal's reply rather than in it (as containerd's CRI leaves
 * content removal to its collector). Each request is noted in Redis first (keys.gcPending), and
 * the note goes only once a collection that began after it has finished: a collection a crash
 * interrupted, or one that failed, runs again when the image-service starts (resume), so nothing
 * the removal left unreferenced stays behind. Requests arriving while one runs fold into one more run.
 */
export class GcLater {
  private readonly running = new Map<string, Promise<void>>();
  private readonly again = new Set<string>();

  constructor(
    private readonly o: {
      redis: Redis;
      node: string;
      /** One collection of a namespace (content and snapshots). */
      collect: (ns: string) => Promise<unknown>;
      log: Logger;
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
    while (this.running.has(ns)) await this.running.get(ns);
  }

  private kick(ns: string): void {
    if (this.running.has(ns)) {
      this.again.add(ns);
      return;
    }
    const run = this.runOnce(ns).finally(() => {
      this.running.delete(ns);
      if (this.again.delete(ns)) this.kick(ns);
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
