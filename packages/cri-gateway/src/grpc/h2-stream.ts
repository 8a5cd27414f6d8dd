import type { CallMarks } from './call-timing.js';
import type { H2Error } from './h2-frames.js';

/** One thing a stream has to send, in order: an encoded header block or DATA octets. */
export type Outgoing =
  | { kind: 'headers'; block: Buffer; end: boolean }
  | { kind: 'data'; data: Buffer; offset: number };

/** What a stream needs from its connection: a flush soon, and a way to reset itself. */
export interface StreamOwner {
  /** Sends queued frames at the end of this tick (so a whole reply goes in one write). */
  scheduleFlush(stream: H2Stream): void;
  /** Writes what every stream has queued now, rather than at the end of this tick. */
  flushNow(): void;
  /** Ends the stream with RST_STREAM `code`. */
  resetStream(stream: H2Stream, code: H2Error): void;
  /** Whether the socket is over its buffer limit (the call should wait for `writable`). */
  readonly congested: boolean;
}

/** Callbacks the request's consumer (grpc-call.ts) sets on a stream. */
export interface StreamEvents {
  /** DATA octets from the client, padding removed. */
  onData(chunk: Buffer): void;
  /** The client half-closed (END_STREAM). */
  onEnd(): void;
  /** The stream ended before the reply did: the client reset it, or the connection went. */
  onAbort(reason: string): void;
}

/**
 * One HTTP/2 stream of a client's request, as the server side sees it (RFC 9113 section 5.1):
 * what it still has to send, its send window, and whether each side has ended. The connection
 * moves octets; the stream only queues them, so flow control lives in one place.
 */
export class H2Stream {
  /** Octets the peer lets us send on this stream (its SETTINGS_INITIAL_WINDOW_SIZE, then updates). */
  sendWindow: number;
  /** Octets the client may still send before we grant more. */
  recvWindow: number;
  /** The client sent END_STREAM. */
  remoteEnded = false;
  /** Our END_STREAM has been queued: nothing more may be sent. */
  localEnded = false;
  /** Closed both ways or reset: the connection has forgotten it. */
  closed = false;
  readonly queue: Outgoing[] = [];
  events: StreamEvents | undefined;
  /** Timing marks (BERTH_CRI_TIMING only). */
  marks: CallMarks | undefined;
  private waiters: (() => void)[] = [];

  constructor(
    readonly id: number,
    private readonly owner: StreamOwner,
    windows: { send: number; recv: number },
  ) {
    this.sendWindow = windows.send;
    this.recvWindow = windows.recv;
  }

  /** Queues an encoded header block (response headers, or trailers when `end`). */
  sendHeaders(block: Buffer, end: boolean): void {
    if (this.localEnded || this.closed) return;
    this.queue.push({ kind: 'headers', block, end });
    if (end) this.localEnded = true;
    this.owner.scheduleFlush(this);
  }

  /** Queues DATA octets; they leave as the peer's windows allow. */
  sendData(data: Buffer): void {
    if (this.localEnded || this.closed || data.length === 0) return;
    this.queue.push({ kind: 'data', data, offset: 0 });
    this.owner.scheduleFlush(this);
  }

  /**
   * Hands what is queued to the socket now: a call's complete reply leaves before the bookkeeping
   * that follows it (span, metrics, access log), which the client then does not wait for.
   */
  flush(): void {
    if (this.queue.length > 0) this.owner.flushNow();
  }

  /** Resets the stream (RST_STREAM), dropping what was queued. */
  reset(code: H2Error): void {
    if (!this.closed) this.owner.resetStream(this, code);
  }

  /**
   * Resolves once everything queued has been handed to the socket and the socket is not
   * congested: a server-streaming call awaits it between messages, so a slow reader holds the
   * handler back instead of filling memory. Resolves at once on a closed stream.
   */
  writable(): Promise<void> {
    if (this.closed || (this.queue.length === 0 && !this.owner.congested)) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /** Called by the connection after a flush or a drain: wakes waiters when writable. */
  wake(): void {
    if (this.waiters.length === 0) return;
    if (!this.closed && (this.queue.length > 0 || this.owner.congested)) return;
    const w = this.waiters;
    this.waiters = [];
    for (const resolve of w) resolve();
  }

  /** Marks the stream closed and tells its consumer, if the reply had not ended. */
  close(abortReason?: string): void {
    if (this.closed) return;
    this.closed = true;
    this.queue.length = 0;
    if (abortReason !== undefined) this.events?.onAbort(abortReason);
    this.wake();
  }
}
