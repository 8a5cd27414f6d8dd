/** Where a mirror reads the records it keeps, and how a fresh one meets the one it has. */
export interface MirrorSource<T> {
  /** One record again; undefined when it is gone (or not one to keep). */
  fetch(key: string): Promise<T | undefined>;
  /** Every record to keep, by key. */
  list(): Promise<[string, T][]>;
  /** What to keep when a refresh brings `fresh` over `cur` (default: `fresh`). */
  merge?(cur: T, fresh: T): T;
}

/**
 * Records of another service kept in memory and kept true: each key refreshes on demand (an event
 * named it, or a write changed it), the newest refresh of a key wins over older ones still in
 * flight, a read of a key waits for its refresh, a read of all waits for every refresh, and a
 * resync reads everything again (core NATS events are at-most-once). Until the first resync has
 * loaded it, `loaded` is false and callers read the service itself.
 */
export class Mirror<T> {
  private readonly byKey = new Map<string, T>();
  /** Per key, the number of its latest refresh or patch: older refreshes never land over it. */
  private readonly gen = new Map<string, number>();
  private readonly pending = new Map<string, Promise<void>>();
  /** Per key, the refresh whose read has not started yet (later calls share it). */
  private readonly queued = new Map<string, Promise<void>>();
  /**
   * Keys whose last refresh failed: their record is unknown (not gone), so a read of all must
   * not answer from memory, where they are missing, until a refresh or a resync lands them.
   */
  private readonly unknown = new Set<string>();
  /** A resync started because a record was unknown is under way (one at a time). */
  private healing = false;
  private counter = 0;
  /** Bumped whenever a kept record is set or dropped: what derive() made is good while it holds. */
  private version = 0;
  /** Per derive() function, what it made and the version it made it from. */
  private readonly derived = new Map<(all: T[]) => unknown, { version: number; value: unknown }>();
  private timer: NodeJS.Timeout | undefined;
  /** The next try of a first load that failed. */
  private retry: NodeJS.Timeout | undefined;
  private stopped = false;
  loaded = false;

  constructor(
    private readonly source: MirrorSource<T>,
    private readonly onError: (err: unknown) => void,
  ) {}

  /**
   * Reads one key again; reads of it wait for this. The read starts on the next turn of the event
   * loop, and calls for the same key until then share it: an event naming a container and the
   * reply to the write that caused it usually arrive together, and one read started after both
   * shows what each of them needs.
   */
  refresh(key: string): Promise<void> {
    const queued = this.queued.get(key);
    if (queued) return queued;
    const done: Promise<void> = new Promise<void>((resolve) => setImmediate(resolve))
      .then(() => {
        // A write's reply (replace) or a removal (forget) landed meanwhile: nothing to read.
        if (this.queued.get(key) !== done) return;
        this.queued.delete(key);
        return this.read(key);
      })
      .finally(() => {
        if (this.pending.get(key) === done) this.pending.delete(key);
      });
    this.queued.set(key, done);
    this.pending.set(key, done);
    return done;
  }

  /** One read of a key; it lands unless a newer refresh started meanwhile. */
  private read(key: string): Promise<void> {
    const g = ++this.counter;
    this.gen.set(key, g);
    return this.source.fetch(key).then(
      (fresh) => {
        if (this.gen.get(key) !== g) return;
        this.unknown.delete(key);
        const cur = this.byKey.get(key);
        this.version++;
        if (fresh === undefined) this.byKey.delete(key);
        else this.byKey.set(key, cur && this.source.merge ? this.source.merge(cur, fresh) : fresh);
      },
      (err: unknown) => {
        // Unknown now: the caller reads the service itself until a refresh lands.
        if (this.gen.get(key) === g) {
          this.version++;
          this.byKey.delete(key);
          this.unknown.add(key);
        }
        this.onError(err);
      },
    );
  }

  /**
   * Sets a record from what a write replied (the service's record as it now is). Refreshes of it
   * still in flight (an event of that write reached us before its reply) never land, and reads
   * no longer wait for them: they were asked no later than the reply was made (one whose read
   * has not started is not read at all). `update` gets the kept record (undefined: none) and
   * returns the new one, or undefined to change nothing; returns whether it changed.
   */
  replace(key: string, update: (cur: T | undefined) => T | undefined): boolean {
    const next = update(this.byKey.get(key));
    if (next === undefined) return false;
    this.gen.set(key, ++this.counter);
    this.version++;
    this.byKey.set(key, next);
    this.pending.delete(key);
    this.queued.delete(key);
    this.unknown.delete(key);
    return true;
  }

  /** Drops a key known to be gone; refreshes of it still in flight never land. */
  forget(key: string): void {
    this.gen.set(key, ++this.counter);
    this.version++;
    this.byKey.delete(key);
    this.pending.delete(key);
    this.queued.delete(key);
    this.unknown.delete(key);
  }

  /** Sets a record from what an event says, ahead of the service's own record; true if it did. */
  patch(key: string, update: (cur: T) => T | undefined): boolean {
    const cur = this.byKey.get(key);
    if (cur === undefined) return false;
    const next = update(cur);
    if (next === undefined) return false;
    this.version++;
    this.byKey.set(key, next);
    return true;
  }

  /** Reads everything again; keys touched meanwhile keep their newer state. */
  async resync(): Promise<void> {
    const before = this.counter;
    const started = new Map(this.gen);
    const all = await this.source.list();
    this.version++;
    const seen = new Set<string>();
    for (const [key, v] of all) {
      seen.add(key);
      if ((this.gen.get(key) ?? 0) === (started.get(key) ?? 0)) this.byKey.set(key, v);
    }
    for (const key of [...this.byKey.keys()]) {
      if (!seen.has(key) && (this.gen.get(key) ?? 0) <= before) this.byKey.delete(key);
    }
    // The list answered for every key not touched since it was asked: known again (or gone).
    for (const key of [...this.unknown]) {
      if ((this.gen.get(key) ?? 0) === (started.get(key) ?? 0)) this.unknown.delete(key);
    }
    this.loaded = true;
  }

  /** The record of `key` kept now (a refresh in flight not waited for); undefined: none. */
  peek(key: string): T | undefined {
    return this.byKey.get(key);
  }

  /** The record of `key` once its refresh (if any) landed; undefined when the mirror has none. */
  async get(key: string): Promise<T | undefined> {
    await this.pending.get(key);
    return this.byKey.get(key);
  }

  /**
   * Every record, once the refreshes in flight landed; undefined when a refresh failed and left
   * a record unknown: the caller asks the service itself, and a resync is started to make the
   * mirror whole again (rather than wait for the periodic one).
   */
  async values(): Promise<T[] | undefined> {
    return (await this.settled()) ? [...this.byKey.values()] : undefined;
  }

  /**
   * The record of `key` when it can be told without waiting: `{ value }` (value undefined: none)
   * when no refresh of it is in flight and it is not unknown; undefined otherwise (use get()).
   */
  getNow(key: string): { value: T | undefined } | undefined {
    if (this.pending.has(key) || this.unknown.has(key)) return undefined;
    return { value: this.byKey.get(key) };
  }

  /**
   * derive()'s value when it can be had without waiting (no refresh in flight, no record
   * unknown): made now if a record changed since; undefined otherwise (use derive()).
   */
  deriveNow<R>(make: (all: T[]) => R): R | undefined {
    if (this.pending.size > 0 || this.unknown.size > 0) return undefined;
    return this.made(make);
  }

  /**
   * What `make` returns for every record (as values() has them), made again only when a record
   * was set or dropped since its last call (or a refresh was in flight): ListImages and
   * ImageStatus read the same sorted list many times between two changes. Undefined as values().
   * `make` is the cache's key (pass the same function each time); its result is shared by every
   * caller, who must not change it.
   */
  async derive<R>(make: (all: T[]) => R): Promise<R | undefined> {
    if ((this.pending.size > 0 || this.unknown.size > 0) && !(await this.settled())) return undefined;
    return this.made(make);
  }

  /** What `make` returns for the records as they are now: kept until a record changes. */
  private made<R>(make: (all: T[]) => R): R {
    const hit = this.derived.get(make);
    if (hit?.version === this.version) return hit.value as R;
    const value = make([...this.byKey.values()]);
    this.derived.set(make, { version: this.version, value });
    return value;
  }

  /** Waits for the refreshes in flight; false when a record is unknown (a resync is started). */
  private async settled(): Promise<boolean> {
    if (this.pending.size > 0) await Promise.all(this.pending.values());
    if (this.unknown.size === 0) return true;
    if (!this.healing) {
      this.healing = true;
      this.resync()
        .catch(this.onError)
        .finally(() => {
          this.healing = false;
        });
    }
    return false;
  }

  /** The keys (kept or being refreshed) that start with `prefix`: itself alone when it is one. */
  keysFrom(prefix: string): string[] {
    if (this.knows(prefix)) return [prefix];
    const keys = new Set([...this.byKey.keys(), ...this.pending.keys()]);
    return [...keys].filter((k) => k.startsWith(prefix));
  }

  /** True when `key` has a record or a refresh in flight. */
  knows(key: string): boolean {
    return this.byKey.has(key) || this.pending.has(key);
  }

  /**
   * Loads everything now, and again every `everyMs` (errors go to onError). When the first load
   * fails (at boot the service may not answer yet) it rejects, and the load is tried again soon
   * (100 ms, doubling up to `everyMs`) until one succeeds: until then every read goes to the
   * service, a round trip each, which the periodic resync alone would leave for `everyMs`.
   */
  async start(everyMs: number): Promise<void> {
    this.stopped = false;
    this.timer = setInterval(() => void this.resync().catch(this.onError), everyMs);
    this.timer.unref();
    try {
      await this.resync();
    } catch (err) {
      this.loadSoon(100, everyMs);
      throw err;
    }
  }

  /** Tries the first load again after `delayMs`, backing off, until it succeeds or stop(). */
  private loadSoon(delayMs: number, maxMs: number): void {
    this.retry = setTimeout(() => {
      if (this.loaded || this.stopped) return;
      // Failures here are the first one's again (already reported): only the next try follows.
      this.resync().catch(() => this.loadSoon(Math.min(delayMs * 2, maxMs), maxMs));
    }, delayMs);
    this.retry.unref();
  }

  /** Stops resyncing and forgets everything; `loaded` is false again. */
  stop(): void {
    this.stopped = true;
    clearInterval(this.timer);
    clearTimeout(this.retry);
    this.version++;
    this.byKey.clear();
    this.derived.clear();
    this.unknown.clear();
    this.loaded = false;
  }
}
