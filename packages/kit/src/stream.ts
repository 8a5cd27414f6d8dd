/**
 * Flow-controlled byte streams over core NATS, implemented once for every streamed operation (a
 * container's log, attach and exec sessions). Core NATS neither slows a fast publisher down nor
 * tells it about a slow or dead subscriber, so each end of a stream:
 * - numbers its data frames; the other end acknowledges what its reader consumed, and a writer
 *   never has more unacknowledged frames in flight than the other end's window (`write` waits for
 *   credit): memory on both sides stays bounded and a slow reader slows the producer down;
 * - checks that frames arrive in sequence (a gap is DATA_LOSS, never silently skipped lines);
 * - sends a heartbeat, carrying its latest acknowledgement, when it has sent nothing for a while,
 *   and fails with UNAVAILABLE when the other end has been silent too long (process or node gone).
 *
 * Each direction ends on its own (`end()` sends an end frame naming the last sequence number);
 * `close()` ends the whole stream (a cancel frame tells the other end to stop); `fail()` sends an
 * error frame. The wire: a 10-byte header (kind, channel, sequence, acknowledgement, big endian)
 * and the payload. See @berth/api's stream.ts for how the two ends find each other.
 */
import { StringDecoder } from 'node:string_decoder';
import {
  BerthError,
  Code,
  type CriLogLine,
  MAX_STREAM_WINDOW,
  parseCriLine,
  StreamChannel,
  type StreamEnd,
  toBerthError,
} from '@berth/api';
import type { NatsConnection, Subscription } from 'nats';
import { newInbox } from './nats.js';

/** Kinds of frame. */
export const FrameKind = { data: 1, end: 2, error: 3, ack: 4, heartbeat: 5, cancel: 6 } as const;
export type FrameKind = (typeof FrameKind)[keyof typeof FrameKind];

/** Bytes of the header before each frame's payload. */
export const FRAME_HEADER_BYTES = 10;

/** One data frame as the reader receives it. */
export interface StreamChunk {
  channel: number;
  data: Uint8Array;
}

/** Options of one end of a stream. */
export interface StreamOptions {
  /** What the stream carries, for error messages (`logs of container "x" on node "b"`). */
  what: string;
  /** Data frames this end buffers before acknowledging (its receive window); default 16. */
  window?: number;
  /** Largest payload of one data frame; default 64 KiB (NATS's max_payload is 1 MiB by default). */
  maxFrameBytes?: number;
  /** A heartbeat goes out after this long without sending anything; default 2 s. */
  heartbeatMs?: number;
  /** The other end counts as gone after this long without a frame; default 5 heartbeats. */
  deadAfterMs?: number;
}

/** Encodes one frame (exported for tests of the receiving side). */
export function encodeFrame(
  kind: FrameKind,
  f: { channel?: number; seq?: number; ack?: number; payload?: Uint8Array },
): Uint8Array {
  const payload = f.payload ?? new Uint8Array(0);
  const b = Buffer.allocUnsafe(FRAME_HEADER_BYTES + payload.length);
  b.writeUInt8(kind, 0);
  b.writeUInt8(f.channel ?? 0, 1);
  b.writeUInt32BE(f.seq ?? 0, 2);
  b.writeUInt32BE(f.ack ?? 0, 6);
  b.set(payload, FRAME_HEADER_BYTES);
  return b;
}

const KINDS = new Set<number>(Object.values(FrameKind));

/**
 * One end of a stream. Make it with {@link openStream} (its inbox is subscribed at once), tell
 * the other end `inbox` and `window`, and `connect()` it to the other end's once known.
 */
export class NatsStream {
  readonly inbox: string;
  /** Data frames this end buffers unacknowledged. */
  readonly window: number;
  /** Aborted when the stream ends for good (closed, failed, cancelled, other end gone). */
  readonly signal: AbortSignal;
  private readonly abort = new AbortController();
  private readonly what: string;
  private readonly maxFrame: number;
  private readonly heartbeatMs: number;
  private readonly deadAfterMs: number;
  private readonly sub: Subscription;
  private peer: string | undefined;
  private peerWindow = 0;
  // Sending side.
  private sendSeq = 0;
  private peerAcked = 0;
  private sentEnd = false;
  private creditWaiters: (() => void)[] = [];
  private writing: Promise<void> = Promise.resolve();
  // Receiving side.
  private recvSeq = 0;
  private consumed = 0;
  private ackSent = 0;
  private readonly queue: { seq: number; chunk: StreamChunk }[] = [];
  private recvDone = false;
  private recvError: BerthError | undefined;
  private wake: (() => void) | undefined;
  // Liveness.
  private lastHeard = Date.now();
  private lastSent = Date.now();
  private timer: NodeJS.Timeout | undefined;
  private failure: BerthError | undefined;
  private maxInFlight = 0;

  /** @internal Use {@link openStream}. */
  constructor(
    private readonly nc: NatsConnection,
    o: StreamOptions,
  ) {
    this.what = o.what;
    this.window = Math.min(MAX_STREAM_WINDOW, Math.max(1, o.window ?? 16));
    this.maxFrame = o.maxFrameBytes ?? 64 * 1024;
    this.heartbeatMs = o.heartbeatMs ?? 2000;
    this.deadAfterMs = o.deadAfterMs ?? this.heartbeatMs * 5;
    this.signal = this.abort.signal;
    this.inbox = newInbox(nc);
    this.sub = nc.subscribe(this.inbox, {
      callback: (err, msg) => {
        if (err) {
          const e = toBerthError(err);
          this.receiveError(e);
          this.terminate(e);
        } else this.receive(msg.data);
      },
    });
  }

  /** This end as the other end needs it (`{ inbox, window }`). */
  get local(): StreamEnd {
    return { inbox: this.inbox, window: this.window };
  }

  /** Starts talking to the other end: its inbox and the data frames it takes unacknowledged. */
  connect(peer: StreamEnd): void {
    if (this.peer) throw new BerthError(Code.INTERNAL, `${this.what}: the stream is connected already`);
    this.peer = peer.inbox;
    this.peerWindow = peer.window;
    this.lastHeard = Date.now();
    const tick = Math.max(10, Math.min(this.heartbeatMs, this.deadAfterMs) / 2);
    this.timer = setInterval(() => this.beat(), tick);
    this.timer.unref();
    // Frames may have come before the other end's answer: acknowledge what was consumed since.
    if (this.consumed > this.ackSent) this.send(FrameKind.ack, {});
    this.wakeWriters();
  }

  /** Data frames sent and not yet acknowledged (never more than the other end's window). */
  inFlight(): number {
    return this.sendSeq - this.peerAcked;
  }

  /** The most data frames ever in flight at once (for tests of the bound). */
  peakInFlight(): number {
    return this.maxInFlight;
  }

  /** Counters of both directions: data frames sent, acknowledged, received, consumed, acked back. */
  counters(): { sent: number; peerAcked: number; received: number; consumed: number; ackSent: number } {
    return {
      sent: this.sendSeq,
      peerAcked: this.peerAcked,
      received: this.recvSeq,
      consumed: this.consumed,
      ackSent: this.ackSent,
    };
  }

  /** Data frames received and not yet taken by the reader (never more than `window`). */
  buffered(): number {
    return this.queue.length;
  }

  /**
   * Sends bytes on a channel, split into frames; resolves once every frame is sent, waiting for
   * credit while the other end's window is full. Fails once the stream has ended.
   */
  write(data: Uint8Array, channel = 0): Promise<void> {
    // Writes queue up behind each other, so concurrent callers keep their bytes in order.
    const p = this.writing.then(() => this.writeNow(data, channel));
    this.writing = p.catch(() => undefined);
    return p;
  }

  private async writeNow(data: Uint8Array, channel: number): Promise<void> {
    for (let off = 0; off < data.length; off += this.maxFrame) {
      await this.credit();
      const seq = ++this.sendSeq;
      this.maxInFlight = Math.max(this.maxInFlight, this.inFlight());
      this.send(FrameKind.data, {
        channel,
        seq,
        payload: data.subarray(off, Math.min(data.length, off + this.maxFrame)),
      });
    }
  }

  private async credit(): Promise<void> {
    for (;;) {
      if (this.failure) throw this.failure;
      if (this.sentEnd) throw new BerthError(Code.FAILED_PRECONDITION, `${this.what}: written after its end`);
      if (this.peer && this.inFlight() < this.peerWindow) return;
      await new Promise<void>((r) => this.creditWaiters.push(r));
    }
  }

  /** Ends this end's direction after what was written; the other end reads to the end. */
  async end(): Promise<void> {
    await this.writing;
    if (this.failure || this.sentEnd) return;
    await this.until(() => this.peer !== undefined);
    if (this.failure || this.sentEnd) return;
    this.sentEnd = true;
    this.send(FrameKind.end, { seq: this.sendSeq });
  }

  /** Ends the stream with an error the other end's reader gets after the data already sent. */
  fail(err: unknown): void {
    if (this.failure) return;
    const e = toBerthError(err);
    if (this.peer) this.send(FrameKind.error, { payload: Buffer.from(JSON.stringify(e.toWire())) });
    this.receiveError(e);
    this.terminate(e);
  }

  /**
   * Closes this end: the other end is told to stop sending (unless both directions ended), and
   * the reader here stops at once. Safe to call more than once.
   */
  close(): void {
    if (this.failure) return;
    const finished = this.recvDone && !this.recvError && this.sentEnd;
    this.queue.length = 0;
    this.recvDone = true;
    const e = new BerthError(Code.CANCELLED, `${this.what}: the stream was closed`);
    if (finished) this.terminate(e);
    else this.cancel(e);
  }

  /** Tells the other end to stop sending and ends locally with `e`. */
  private cancel(e: BerthError): void {
    if (this.peer) this.send(FrameKind.cancel, {});
    this.terminate(e);
  }

  /** What the other end sends, frame by frame, until its end; throws its error or a lost stream. */
  async *chunks(): AsyncGenerator<StreamChunk> {
    for (;;) {
      const next = this.queue.shift();
      if (next) {
        yield next.chunk;
        // The reader asked for more: the frame is consumed. Acknowledge in batches of half a
        // window, and everything consumed once the reader waits for more.
        this.consumed = next.seq;
        if (this.consumed - this.ackSent >= Math.max(1, this.window >> 1)) this.send(FrameKind.ack, {});
        continue;
      }
      if (this.recvError) throw this.recvError;
      if (this.recvDone) return;
      if (this.consumed > this.ackSent) this.send(FrameKind.ack, {});
      await new Promise<void>((r) => {
        this.wake = r;
      });
    }
  }

  /** Resolves when `cond` holds or the stream failed; used to wait for `connect`. */
  private async until(cond: () => boolean): Promise<void> {
    while (!cond() && !this.failure) await new Promise<void>((r) => this.creditWaiters.push(r));
  }

  private send(kind: FrameKind, f: { channel?: number; seq?: number; payload?: Uint8Array }): void {
    if (!this.peer || this.nc.isClosed()) return;
    if (this.consumed > this.ackSent) this.ackSent = this.consumed;
    this.lastSent = Date.now();
    try {
      this.nc.publish(this.peer, encodeFrame(kind, { ...f, ack: this.ackSent }));
    } catch (err) {
      const e = new BerthError(Code.UNAVAILABLE, `${this.what}: cannot send: ${(err as Error).message}`, {
        cause: err,
      });
      this.receiveError(e);
      this.terminate(e);
    }
  }

  private receive(b: Uint8Array): void {
    if (this.failure) return;
    if (b.length < FRAME_HEADER_BYTES || !KINDS.has(b[0] as number)) {
      this.protocolError('a malformed frame');
      return;
    }
    const buf = Buffer.from(b.buffer, b.byteOffset, b.length);
    const kind = buf.readUInt8(0) as FrameKind;
    const channel = buf.readUInt8(1);
    const seq = buf.readUInt32BE(2);
    const ack = buf.readUInt32BE(6);
    this.lastHeard = Date.now();
    if (ack > this.peerAcked) {
      if (ack > this.sendSeq) {
        this.protocolError(`an acknowledgement of frame ${ack} never sent`);
        return;
      }
      this.peerAcked = ack;
      this.wakeWriters();
    }
    if (this.recvDone) return;
    switch (kind) {
      case FrameKind.data: {
        if (seq !== this.recvSeq + 1) {
          const e = new BerthError(
            Code.DATA_LOSS,
            `${this.what}: frame ${seq} came after ${this.recvSeq}: frames were lost`,
          );
          this.receiveError(e);
          this.cancel(e);
          return;
        }
        if (seq - this.consumed > this.window) {
          this.protocolError(`more than ${this.window} frames unacknowledged`);
          return;
        }
        this.recvSeq = seq;
        this.queue.push({ seq, chunk: { channel, data: buf.subarray(FRAME_HEADER_BYTES) } });
        break;
      }
      case FrameKind.end:
        if (seq !== this.recvSeq) {
          const e = new BerthError(
            Code.DATA_LOSS,
            `${this.what}: ended after frame ${seq} but ${this.recvSeq} arrived`,
          );
          this.receiveError(e);
          this.cancel(e);
        } else this.recvDone = true;
        break;
      case FrameKind.error: {
        const e = wireError(buf.subarray(FRAME_HEADER_BYTES), this.what);
        this.receiveError(e);
        this.terminate(e);
        break;
      }
      case FrameKind.cancel: {
        const e = new BerthError(Code.CANCELLED, `${this.what}: the other end closed the stream`);
        this.receiveError(e);
        this.terminate(e);
        break;
      }
      case FrameKind.heartbeat:
        // Frames from one connection arrive in order: a heartbeat past the last frame here
        // means frames in between were lost.
        if (seq > this.recvSeq) {
          const e = new BerthError(
            Code.DATA_LOSS,
            `${this.what}: frames ${this.recvSeq + 1}..${seq} were sent but never arrived`,
          );
          this.receiveError(e);
          this.cancel(e);
        }
        break;
      default:
        break;
    }
    this.wakeReader();
  }

  private protocolError(what: string): void {
    this.fail(new BerthError(Code.INTERNAL, `${this.what}: protocol error: ${what}`));
  }

  private receiveError(e: BerthError): void {
    if (this.recvDone) return;
    this.recvError = e;
    this.recvDone = true;
    this.wakeReader();
  }

  private beat(): void {
    const now = Date.now();
    if (now - this.lastHeard > this.deadAfterMs) {
      const e = new BerthError(
        Code.UNAVAILABLE,
        `${this.what}: the other end sent nothing for ${this.deadAfterMs} ms (its process or node is gone)`,
      );
      this.receiveError(e);
      this.terminate(e);
      return;
    }
    // A heartbeat names the last data frame sent: frames lost at the end of a burst show up too.
    if (now - this.lastSent >= this.heartbeatMs) this.send(FrameKind.heartbeat, { seq: this.sendSeq });
  }

  /** Ends everything locally: writers fail with `e`; the reader keeps what receiveError set. */
  private terminate(e: BerthError): void {
    if (this.failure) return;
    this.failure = e;
    clearInterval(this.timer);
    this.sub.unsubscribe();
    this.abort.abort(e);
    this.wakeWriters();
    this.wakeReader();
  }

  private wakeWriters(): void {
    const ws = this.creditWaiters;
    this.creditWaiters = [];
    for (const w of ws) w();
  }

  private wakeReader(): void {
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }
}

function wireError(payload: Uint8Array, what: string): BerthError {
  try {
    const w = JSON.parse(Buffer.from(payload).toString('utf8')) as { code?: unknown; message?: unknown };
    if (typeof w.code === 'string' && typeof w.message === 'string' && Object.hasOwn(Code, w.code)) {
      return new BerthError(w.code as Code, w.message);
    }
  } catch {
    // fall through
  }
  return new BerthError(Code.INTERNAL, `${what}: the other end failed with an unreadable error`);
}

/** Opens one end of a stream: subscribes its inbox now, so no frame sent to it is missed. */
export function openStream(nc: NatsConnection, o: StreamOptions): NatsStream {
  return new NatsStream(nc, o);
}

/**
 * The CRI log lines a `logs` stream carries: its log-channel chunks joined and split on newlines
 * (a line cut across frames is whole again, and so is a character cut across them), each parsed;
 * what does not parse as a CRI line is skipped. The CLI and the SDK both read remote logs so.
 */
export async function* criLogLines(chunks: AsyncIterable<StreamChunk>): AsyncGenerator<CriLogLine> {
  const text = new StringDecoder('utf8');
  let carry = '';
  for await (const c of chunks) {
    if (c.channel !== StreamChannel.log) continue;
    const lines = (carry + text.write(Buffer.from(c.data))).split('\n');
    carry = lines.pop() ?? '';
    for (const l of lines) {
      const parsed = parseCriLine(l);
      if (parsed) yield parsed;
    }
  }
  const last = parseCriLine(carry + text.end());
  if (last) yield last;
}
