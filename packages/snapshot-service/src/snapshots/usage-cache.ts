import { BerthError, Code } from '@berth/api';
import type { Logger } from '@berth/kit';
import type { Usage } from './usage.js';

/** Default refresh period: containerd's CRI `stats_collect_period` (10 s). */
export const USAGE_REFRESH_MS = 10_000;

/** Default bound on walks running at once across snapshots (they share the disk). */
export const USAGE_WALKS = 2;

/** An entry not asked for in this many refresh periods leaves the refresh. */
export const USAGE_IDLE_PERIODS = 3;

/** A figure and when the walk behind it started (ms since the epoch). */
export interface MeasuredUsage extends Usage {
  measuredAt: number;
}

/** What one refresh pass did (see UsageCache.refresh). */
export interface UsagePass {
  /** Ids walked again; every one of those walks has settled when the pass is reported. */
  walked: string[];
  /** Ids dropped because nobody asked for them in USAGE_IDLE_PERIODS periods. */
  expired: string[];
}

/** How a UsageCache walks and when. */
export interface UsageCacheOptions {
  /** Measures one directory (walkUsage; tests count calls). ENOENT means the snapshot is gone. */
  walk: (dir: string) => Promise<Usage>;
  /** How often the figures asked for are walked again. */
  periodMs: number;
  /** Walks running at once across snapshots. */
  concurrency: number;
  /** Clock in ms since the epoch (default Date.now): ages, idle expiry, measuredAt. */
  now?: () => number;
  /** false: no timer, the owner calls refresh() itself (tests). Default true. */
  timer?: boolean;
  /** Called after each pass (the timer's or a refresh() call). */
  onPass?: (pass: UsagePass) => void;
  log?: Logger;
}

/** One walk of one snapshot, numbered in the order walks were asked for (see fresh). */
interface Walk {
  n: number;
  done: Promise<MeasuredUsage>;
}

interface Entry {
  dir: string;
  /** When a cached figure was last asked for (idle expiry). */
  askedAt: number;
  value?: MeasuredUsage;
  /** The walk queued or running for this snapshot: at most one at a time. */
  walk?: Walk;
}

/**
 * Disk usage of active snapshots served from memory and walked again in the background, as
 * containerd's CRI serves writable-layer usage from a snapshot store its syncer refreshes every
 * `stats_collect_period`. A snapshot enters on its first ask (one walk, shared by concurrent
 * asks), is walked again every `periodMs` while asked for, and leaves after USAGE_IDLE_PERIODS
 * periods without an ask, so an idle node walks nothing; the timer runs only while entries do.
 * Keys are snapshot ids (a directory's number, never reused), so a key removed and prepared again
 * never answers the old directory's figure.
 */
export class UsageCache {
  private readonly entries = new Map<string, Entry>();
  private readonly queue: WalkQueue;
  private readonly now: () => number;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  /** Walks asked for so far (Walk.n). */
  private started = 0;

  constructor(private readonly opts: UsageCacheOptions) {
    this.queue = new WalkQueue(opts.concurrency);
    this.now = opts.now ?? Date.now;
  }

  /**
   * The figure of snapshot `id` (directory `dir`): the last walk's, at most one period old, or,
   * on a first ask, that of a walk made now (concurrent first asks share it). A first walk that
   * fails rejects and leaves nothing behind.
   */
  cached(id: string, dir: string): Promise<MeasuredUsage> {
    if (this.closed) return this.measure(dir);
    let e = this.entries.get(id);
    if (!e) {
      e = { dir, askedAt: 0 };
      this.entries.set(id, e);
      this.arm();
    }
    e.askedAt = this.now();
    if (e.value) return Promise.resolve(e.value);
    return (e.walk ?? this.startWalk(id, e, true)).done;
  }

  /**
   * A figure from a walk that starts after this call (a quota check, `berth snapshot usage`).
   * It replaces the cached one; a walk already running for the snapshot is waited for first, so
   * walks of one snapshot never overlap. Without an entry, a walk of its own that adds none.
   */
  async fresh(id: string, dir: string): Promise<MeasuredUsage> {
    const mark = this.started;
    for (;;) {
      const e = this.entries.get(id);
      if (!e || this.closed) return this.measure(dir);
      const w = e.walk;
      if (w && w.n > mark) return w.done;
      if (!w) return this.startWalk(id, e, true).done;
      await w.done.catch(() => undefined);
    }
  }

  /** Forgets snapshot `id` (removed or committed); a walk of it still running is discarded. */
  drop(id: string): void {
    this.entries.delete(id);
    if (this.entries.size === 0) this.disarm();
  }

  /** Whether snapshot `id` is cached and refreshed. */
  has(id: string): boolean {
    return this.entries.has(id);
  }

  /**
   * One refresh pass (the timer runs one every periodMs): drops entries idle for
   * USAGE_IDLE_PERIODS periods and walks the others again, skipping any whose previous walk is
   * still queued or running; resolves when this pass's walks have settled.
   */
  async refresh(): Promise<UsagePass> {
    const now = this.now();
    const idleMs = this.opts.periodMs * USAGE_IDLE_PERIODS;
    const pass: UsagePass = { walked: [], expired: [] };
    const walks: Promise<unknown>[] = [];
    for (const [id, e] of this.entries) {
      if (now - e.askedAt >= idleMs) {
        this.entries.delete(id);
        pass.expired.push(id);
        continue;
      }
      if (e.walk) continue;
      pass.walked.push(id);
      walks.push(this.startWalk(id, e, false).done.catch(() => undefined));
    }
    if (this.entries.size === 0) this.disarm();
    await Promise.all(walks);
    this.opts.onPass?.(pass);
    return pass;
  }

  /** Stops the timer and forgets every entry; resolves once walks already running have ended. */
  async close(): Promise<void> {
    this.closed = true;
    this.disarm();
    const running = [...this.entries.values()].map((e) => e.walk?.done.catch(() => undefined));
    this.entries.clear();
    await Promise.all(running);
  }

  /** A walk outside the entries (no entry, or closed): counted in the concurrency bound. */
  private measure(dir: string): Promise<MeasuredUsage> {
    return this.queue.run(() => this.timedWalk(dir), true);
  }

  /** A walk of `dir`, stamped with when it started. */
  private async timedWalk(dir: string): Promise<MeasuredUsage> {
    const measuredAt = this.now();
    return { ...(await this.opts.walk(dir)), measuredAt };
  }

  /** Queues a walk of entry `id` (urgent: someone waits for it) and keeps its figure. */
  private startWalk(id: string, e: Entry, urgent: boolean): Walk {
    const n = ++this.started;
    const done = this.queue.run(async () => {
      // A background walk still queued at close (or after a drop) reads nothing.
      if (this.closed || this.entries.get(id) !== e) {
        throw new BerthError(Code.UNAVAILABLE, `usage of snapshot ${id}: no longer cached`);
      }
      return this.timedWalk(e.dir);
    }, urgent);
    const w: Walk = { n, done };
    e.walk = w;
    // Registered before any caller awaits `done`, so callers see the entry updated.
    done.then(
      (value) => {
        if (e.walk === w) e.walk = undefined;
        if (this.entries.get(id) === e) e.value = value;
      },
      (err: unknown) => {
        if (e.walk === w) e.walk = undefined;
        if (this.entries.get(id) !== e) return;
        // Gone (removed by another replica), or a first walk failed: the next ask walks again.
        if ((err as NodeJS.ErrnoException).code === 'ENOENT' || !e.value) this.drop(id);
        else this.opts.log?.warn({ snapshot: id, err: (err as Error).message }, 'snapshot usage walk failed');
      },
    );
    return w;
  }

  private arm(): void {
    if (this.timer || this.closed || this.opts.timer === false) return;
    this.timer = setInterval(() => {
      this.refresh().catch((err: unknown) =>
        this.opts.log?.warn({ err: (err as Error).message }, 'snapshot usage refresh failed'),
      );
    }, this.opts.periodMs);
    // Nothing waits on a refresh: it never holds a process (a test, `berth down`) open.
    this.timer.unref();
  }

  private disarm(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }
}

/** At most `max` walks at once; urgent ones (someone waits) go before background ones. */
class WalkQueue {
  private running = 0;
  private readonly urgent: (() => void)[] = [];
  private readonly background: (() => void)[] = [];

  constructor(private readonly max: number) {}

  async run<T>(fn: () => Promise<T>, urgent: boolean): Promise<T> {
    if (this.running < this.max) this.running++;
    else await new Promise<void>((go) => (urgent ? this.urgent : this.background).push(go));
    try {
      return await fn();
    } finally {
      // The slot passes straight to the next walk, if any.
      const next = this.urgent.shift() ?? this.background.shift();
      if (next) next();
      else this.running--;
    }
  }
}
