// Every CRI call from a Go client carries a grpc-timeout (critest's and the kubelet's are
// minutes), and a setTimeout and clearTimeout per call (a Timeout object, its list insertion and,
// with the tracer's async context on, its async hooks) sat on every read's path. Here every
// call's deadline is one entry in a list watched by a single timer: a call adds its entry and
// clears it when it settles, and the timer, set for the earliest deadline, is moved only when a
// call comes with an earlier one. Calls of one client have the same timeout, so the timer is set
// about once per timeout, not once per call.

/** One call's deadline: `fire` runs when it passes, unless cleared first. */
export interface Deadline {
  /** When it passes, in performance.now() ms. */
  readonly at: number;
  fire: (() => void) | undefined;
}

// Cleared entries are dropped from the list when they outnumber the live ones past this many.
const COMPACT_AT = 64;

/** The deadlines of calls in flight, watched by one timer (see the module comment). */
export class Deadlines {
  private entries: Deadline[] = [];
  private live = 0;
  private timer: NodeJS.Timeout | undefined;
  /** When the timer fires (performance.now() ms); Infinity when it is not set. */
  private armedAt = Number.POSITIVE_INFINITY;

  /** Calls `fire` in `ms` milliseconds unless `clear` is called with the returned deadline first. */
  add(ms: number, fire: () => void): Deadline {
    const d: Deadline = { at: performance.now() + ms, fire };
    this.entries.push(d);
    this.live++;
    if (d.at < this.armedAt) this.arm(d.at);
    return d;
  }

  /** Forgets a deadline (its call settled); its `fire` will not run. Clearing twice is harmless. */
  clear(d: Deadline | undefined): void {
    if (d?.fire === undefined) return;
    d.fire = undefined;
    this.live--;
    // The timer stays set: the next call will most likely need it (it fires into an empty list).
    if (this.entries.length > COMPACT_AT && this.live * 2 < this.entries.length) {
      this.entries = this.entries.filter((e) => e.fire !== undefined);
    }
  }

  /** How many deadlines are set (tests). */
  get size(): number {
    return this.live;
  }

  private arm(at: number): void {
    if (this.timer) clearTimeout(this.timer);
    this.armedAt = at;
    // setTimeout counts whole milliseconds: rounded up, the deadline has passed when it fires.
    this.timer = setTimeout(() => this.run(), Math.max(1, Math.ceil(at - performance.now())));
    // Unref: a call with a deadline has an open socket, which keeps the process alive anyway.
    this.timer.unref();
  }

  private run(): void {
    this.timer = undefined;
    this.armedAt = Number.POSITIVE_INFINITY;
    const now = performance.now();
    const due: (() => void)[] = [];
    const rest: Deadline[] = [];
    let next = Number.POSITIVE_INFINITY;
    for (const e of this.entries) {
      if (e.fire === undefined) continue;
      if (e.at <= now) {
        due.push(e.fire);
        e.fire = undefined;
        this.live--;
      } else {
        rest.push(e);
        if (e.at < next) next = e.at;
      }
    }
    this.entries = rest;
    if (next !== Number.POSITIVE_INFINITY) this.arm(next);
    for (const fire of due) fire();
  }
}

/** The deadlines of every call of this process's CRI server. */
export const callDeadlines = new Deadlines();
