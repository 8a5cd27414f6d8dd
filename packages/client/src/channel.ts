import { BerthError, Code } from '@berth/api';

/**
 * A bounded queue that push-style sources (NATS subscriptions) write into and one consumer reads
 * as an async iterator. Core NATS does not slow down for a slow reader, so a reader that falls
 * `limit` items behind gets RESOURCE_EXHAUSTED instead of unbounded memory growth.
 */
export class Channel<T> implements AsyncIterableIterator<T> {
  private readonly items: T[] = [];
  private waiter: ((r: IteratorResult<T>) => void) | undefined;
  private failWaiter: ((err: unknown) => void) | undefined;
  private ended = false;
  private error: unknown;
  private readonly onClose: () => void;

  /** `onClose` runs once, when the channel ends for any reason (unsubscribe there). */
  constructor(
    private readonly limit: number,
    private readonly what: string,
    onClose: () => void = () => undefined,
  ) {
    let closed = false;
    this.onClose = () => {
      if (closed) return;
      closed = true;
      onClose();
    };
  }

  /** Queues one item, or hands it straight to a waiting reader. */
  push(item: T): void {
    if (this.ended) return;
    if (this.waiter) {
      const w = this.waiter;
      this.clearWaiter();
      w({ value: item, done: false });
      return;
    }
    if (this.items.length >= this.limit) {
      this.fail(
        new BerthError(Code.RESOURCE_EXHAUSTED, `${this.what}: the reader fell ${this.limit} items behind`),
      );
      return;
    }
    this.items.push(item);
  }

  /** Ends the channel: the reader gets what is queued, then the end. */
  end(): void {
    if (this.ended) return;
    this.ended = true;
    this.onClose();
    if (this.waiter && this.items.length === 0) {
      const w = this.waiter;
      this.clearWaiter();
      w({ value: undefined, done: true });
    }
  }

  /** Ends the channel with an error, thrown to the reader once the queued items are read. */
  fail(err: unknown): void {
    if (this.ended) return;
    this.error = err;
    this.ended = true;
    this.onClose();
    if (this.failWaiter && this.items.length === 0) {
      const f = this.failWaiter;
      this.clearWaiter();
      f(err);
    }
  }

  next(): Promise<IteratorResult<T>> {
    const item = this.items.shift();
    if (item !== undefined) return Promise.resolve({ value: item, done: false });
    if (this.ended) {
      if (this.error !== undefined) {
        const err = this.error;
        this.error = undefined;
        return Promise.reject(err);
      }
      return Promise.resolve({ value: undefined, done: true });
    }
    return new Promise((resolve, reject) => {
      this.waiter = resolve;
      this.failWaiter = reject;
    });
  }

  /** Called by `break` in a for-await loop: stop listening. */
  return(): Promise<IteratorResult<T>> {
    this.items.length = 0;
    this.error = undefined;
    this.end();
    return Promise.resolve({ value: undefined, done: true });
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<T> {
    return this;
  }

  private clearWaiter(): void {
    this.waiter = undefined;
    this.failWaiter = undefined;
  }
}
