import type { Socket } from 'node:net';
import { recordCall, timingOn } from './call-timing.js';
import {
  DEFAULT_MAX_FRAME,
  FRAME_HEADER,
  FrameType,
  H2Error,
  headerFrames,
  rstStreamFrame,
  writeFrameHeader,
} from './h2-frames.js';
import type { H2Stream } from './h2-stream.js';

/**
 * The sending half of an HTTP/2 connection: writes what streams have queued, within the peer's
 * connection and stream windows (RFC 9113 section 6.9), and holds back the rest until a
 * WINDOW_UPDATE or a larger SETTINGS_INITIAL_WINDOW_SIZE makes room.
 */
export class H2Writer {
  /** Octets the peer lets us send on the connection (65,535 until it grants more). */
  sendWindow = 65_535;
  /** The peer's SETTINGS_MAX_FRAME_SIZE. */
  peerMaxFrame = DEFAULT_MAX_FRAME;
  /**
   * The peer changed SETTINGS_HEADER_TABLE_SIZE: the next header block starts with a dynamic
   * table size update (RFC 7541 section 4.2). It sets 0: this encoder never uses the table.
   */
  tableSizeChanged = false;
  private readonly sending = new Set<H2Stream>();
  private flushQueued = false;
  /** Connection frames (PING and SETTINGS acks, WINDOW_UPDATEs) waiting for the next write. */
  private readonly controls: Buffer[] = [];
  private controlFlush: NodeJS.Immediate | undefined;
  /**
   * The PING ack's timer: one per connection, re-armed with refresh() (a Go client PINGs after
   * every reply, so a setTimeout and a clearTimeout per call would be garbage and timer-list work
   * on each request's path). `pingDue` says whether it is armed; a firing that finds it disarmed
   * (the ack left with a reply) does nothing.
   */
  private pingTimer: NodeJS.Timeout | undefined;
  private pingDue = false;

  constructor(
    private readonly socket: Socket,
    private readonly hooks: {
      /** A stream's END_STREAM has been written: the connection forgets it. */
      ended(stream: H2Stream): void;
      /** After each flush: wake writers, close an idle connection that is going away. */
      flushed(): void;
      /** A reply was written (timing only). */
      written?(at: bigint): void;
    },
  ) {}

  /** Marks `stream` as having output, and flushes at the end of this tick. */
  schedule(stream: H2Stream): void {
    this.sending.add(stream);
    if (this.flushQueued) return;
    this.flushQueued = true;
    queueMicrotask(() => this.flush());
  }

  /**
   * Queues a connection-level frame the peer expects but nothing waits on (a PING or SETTINGS
   * ack, a WINDOW_UPDATE). It leaves with the next write of this turn of the event loop, or on its
   * own at the turn's end (setImmediate): a Go client's BDP PING, which comes in the same read as
   * its next request, is acked in the reply's write instead of a write and a client wake-up of its
   * own. Later in the turn, never later than that, so the client's ping and window accounting
   * stay as timely as a write from the read itself.
   */
  control(frame: Buffer): void {
    this.controls.push(frame);
    this.controlFlush ??= setImmediate(() => {
      this.controlFlush = undefined;
      if (this.controls.length > 0) this.flush();
    });
  }

  /**
   * Queues a PING ack: it leaves with the next write, or on its own PING_ACK_WAIT_MS later. A Go
   * client sends its BDP PING right after it read a reply, and its next request a few hundred µs
   * later: acked in that request's reply, the PING costs neither side a write and a wake-up of its
   * own. Go clients time the PING only to size their flow-control windows (an idle connection's
   * sample is small and does not grow them); during a transfer, writes are frequent and acks prompt.
   */
  pingAck(frame: Buffer): void {
    this.controls.push(frame);
    if (this.controlFlush || this.pingDue) return;
    this.pingDue = true;
    if (this.pingTimer) {
      this.pingTimer.refresh();
      return;
    }
    this.pingTimer = setTimeout(() => {
      if (!this.pingDue) return;
      this.pingDue = false;
      if (this.controls.length > 0) this.flush();
    }, PING_ACK_WAIT_MS);
    this.pingTimer.unref();
  }

  /**
   * Takes the connection frames still queued, for a frame written at once (RST_STREAM, GOAWAY,
   * the connection's end): they go out first, in that write, as they were due first. Without
   * this, an end would drop a queued PING ack, and a stream's WINDOW_UPDATE could follow its
   * RST_STREAM (RFC 9113 section 5.1: no frames on a closed stream).
   */
  takeControls(): Buffer[] {
    this.pingDue = false;
    return this.controls.splice(0);
  }

  /** Forgets a stream that closed with output still queued. */
  drop(stream: H2Stream): void {
    this.sending.delete(stream);
  }

  /**
   * Writes what the streams have queued, as far as the windows allow, in one socket write: a
   * unary reply's HEADERS, DATA and trailers leave together (one syscall, one client wake-up).
   */
  flush(): void {
    this.flushQueued = false;
    if (this.socket.destroyed || this.socket.writableEnded) return;
    const done = timingOn ? [...this.sending].filter((s) => s.marks && s.localEnded) : [];
    // Control frames first: they were due before anything a stream queues now.
    const out: Buffer[] = this.controls.length > 0 ? this.controls.splice(0) : [];
    const controls = out.length;
    if (controls > 0) this.pingDue = false;
    for (const s of this.sending) {
      if (!s.closed) this.drain(s, out);
      if (s.closed || s.queue.length === 0) this.sending.delete(s);
    }
    if (out.length === 1) this.socket.write(out[0] as Buffer);
    else if (out.length > 1) this.socket.write(Buffer.concat(out));
    if (timingOn && out.length > controls) {
      const t = process.hrtime.bigint();
      this.hooks.written?.(t);
      for (const s of done) if (s.marks) recordCall(s.marks, t);
    }
    this.hooks.flushed();
  }

  private drain(s: H2Stream, out: Buffer[]): void {
    while (s.queue.length > 0) {
      const item = s.queue[0];
      if (!item) break;
      if (item.kind === 'headers') {
        // Framed now, not when queued: with the peer's frame size and table size as of this write.
        const block = this.tableSizeChanged ? Buffer.concat([TABLE_SIZE_ZERO, item.block]) : item.block;
        this.tableSizeChanged = false;
        out.push(headerFrames(s.id, block, item.end, this.peerMaxFrame));
        s.queue.shift();
        if (item.end) {
          // A client still sending is told to stop: the reply is complete (RFC 9113 section 8.1).
          if (!s.remoteEnded) out.push(rstStreamFrame(s.id, H2Error.NO_ERROR));
          this.hooks.ended(s);
        }
        continue;
      }
      const n = Math.min(item.data.length - item.offset, this.sendWindow, s.sendWindow, this.peerMaxFrame);
      if (n <= 0) return;
      const head = Buffer.allocUnsafe(FRAME_HEADER);
      writeFrameHeader(head, 0, { length: n, type: FrameType.DATA, flags: 0, stream: s.id });
      out.push(head, item.data.subarray(item.offset, item.offset + n));
      item.offset += n;
      this.sendWindow -= n;
      s.sendWindow -= n;
      if (item.offset === item.data.length) s.queue.shift();
    }
  }
}

/** How long a PING ack waits for a write to go with (H2Writer.pingAck). */
export const PING_ACK_WAIT_MS = 5;

/** An HPACK dynamic table size update to 0 (RFC 7541 section 6.3). */
const TABLE_SIZE_ZERO = Buffer.of(0x20);
