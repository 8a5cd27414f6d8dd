import type { Socket } from 'node:net';
import { cpuNow, timingOn } from './call-timing.js';
import {
  checkFrame,
  DEFAULT_MAX_FRAME,
  Flag,
  type Frame,
  FrameReader,
  FrameType,
  frame,
  framePayload,
  goawayFrame,
  H2ConnectionError,
  H2Error,
  MAX_WINDOW,
  need,
  rstStreamFrame,
  settingsFrame,
  windowUpdateFrame,
} from './h2-frames.js';
import { type HeaderBlock, HeaderBlockReader } from './h2-header-block.js';
import { applyPeerSettings, RECV_WINDOW, SERVER_SETTINGS, type ServerLimits } from './h2-settings.js';
import { H2Stream, type StreamOwner } from './h2-stream.js';
import { H2Writer } from './h2-writer.js';
import type { HeaderField } from './hpack.js';

/** What the connection hands a new request to: its stream and decoded header fields. */
export type RequestListener = (stream: H2Stream, headers: HeaderField[]) => void;

/**
 * The server side of one HTTP/2 connection on a plain socket (RFC 9113): reads frames, keeps the
 * client's HPACK table, opens a stream per request and hands it to `onRequest`, and writes what
 * streams queue within the client's flow-control windows. Any :authority is accepted: on a unix
 * socket the authority names nothing, and Go clients send the socket's path there.
 */
export class H2Connection implements StreamOwner {
  readonly streams = new Map<number, H2Stream>();
  private readonly reader: FrameReader;
  private readonly blocks: HeaderBlockReader;
  private peerInitialWindow = 65_535;
  private recvWindow = RECV_WINDOW.connection;
  private lastStream = 0;
  private readonly writer: H2Writer;
  private goingAway = false;
  private ended = false;
  private failed = false;
  // BERTH_CRI_TIMING only (grpc/call-timing.ts): the last 'data' callback, the process's CPU
  // time then, and the last reply's socket write (how long the connection was idle).
  private recvAt = 0n;
  private recvCpu = 0;
  private lastWriteAt = 0n;

  constructor(
    private readonly socket: Socket,
    private readonly opts: {
      onRequest: RequestListener;
      onProtocolError?: (err: Error) => void;
      limits: ServerLimits;
    },
  ) {
    this.reader = new FrameReader(DEFAULT_MAX_FRAME);
    this.writer = new H2Writer(socket, {
      written: (t) => {
        this.lastWriteAt = t;
      },
      ended: (s) => {
        this.forget(s);
        s.close();
      },
      flushed: () => {
        for (const s of this.streams.values()) s.wake();
        if (this.goingAway && this.idle) this.end();
      },
    });
    this.blocks = new HeaderBlockReader(opts.limits.maxHeaderListSize);
    socket.setNoDelay?.(true);
    // The server's preface: its SETTINGS, then a connection window large enough for one 16 MiB
    // message, so a big request is not throttled to 64 KiB per round trip.
    socket.write(
      Buffer.concat([
        settingsFrame(SERVER_SETTINGS(opts.limits)),
        windowUpdateFrame(0, RECV_WINDOW.connection - 65_535),
      ]),
    );
    socket.on('data', (chunk: Buffer) => this.receive(chunk));
    socket.on('drain', () => this.writer.flush());
    socket.on('error', () => socket.destroy());
    // A client that half-closes its socket still gets the replies of streams in flight.
    socket.on('end', () => {
      this.goingAway = true;
      if (this.idle) this.end();
    });
    socket.on('close', () => this.closeAll('the connection closed'));
  }

  /** Whether the socket holds more than its buffer limit unsent. */
  get congested(): boolean {
    return this.socket.writableNeedDrain;
  }

  /** Whether the connection has no streams left (after GOAWAY: time to close). */
  get idle(): boolean {
    return this.streams.size === 0;
  }

  /** Resolves when the socket has closed. */
  closed(): Promise<void> {
    if (this.socket.closed) return Promise.resolve();
    return new Promise((resolve) => this.socket.once('close', () => resolve()));
  }

  /**
   * Graceful close: GOAWAY naming the last stream that will be served; new streams are refused,
   * those in flight finish, and the connection ends when the last one has.
   */
  goAway(): void {
    if (this.goingAway || this.socket.destroyed) return;
    this.goingAway = true;
    this.writeNow(goawayFrame(this.lastStream, H2Error.NO_ERROR, 'server shutting down'));
    if (this.idle) this.end();
  }

  /** Ends the connection at once: every open stream is aborted. */
  destroy(): void {
    this.socket.destroy();
  }

  scheduleFlush(s: H2Stream): void {
    this.writer.schedule(s);
  }

  /** Writes what every stream has queued now (a unary reply, before its call's bookkeeping). */
  flushNow(): void {
    this.writer.flush();
  }

  resetStream(stream: H2Stream, code: H2Error): void {
    this.forget(stream);
    stream.close(code === H2Error.NO_ERROR ? undefined : 'the server reset the stream');
    if (!this.socket.destroyed) this.writeNow(rstStreamFrame(stream.id, code));
  }

  private receive(chunk: Buffer): void {
    // After a connection error nothing the client sends is read: its state is not trusted.
    if (this.failed) return;
    if (timingOn) {
      this.recvAt = process.hrtime.bigint();
      this.recvCpu = cpuNow();
    }
    try {
      for (const f of this.reader.push(chunk)) this.onFrame(f);
    } catch (err) {
      if (err instanceof H2ConnectionError) this.fail(err);
      else this.fail(new H2ConnectionError(H2Error.INTERNAL_ERROR, (err as Error).message));
    }
  }

  /** A connection error: GOAWAY with the code, then close (RFC 9113 section 5.4.1). */
  private fail(err: H2ConnectionError): void {
    this.failed = true;
    this.opts.onProtocolError?.(err);
    if (this.socket.destroyed) return;
    this.closeAll(`connection error: ${err.message}`);
    this.socket.end(this.withControls(goawayFrame(this.lastStream, err.code, err.message)), () =>
      this.socket.destroy(),
    );
  }

  private onFrame(f: Frame): void {
    this.blocks.check(f);
    checkFrame(f);
    switch (f.type) {
      case FrameType.DATA:
        this.onData(f);
        return;
      case FrameType.HEADERS:
        this.onBlock(this.blocks.headers(f));
        return;
      case FrameType.CONTINUATION:
        this.onBlock(this.blocks.continuation(f));
        return;
      case FrameType.PRIORITY:
        // Priority is advisory and deprecated (RFC 9113 section 5.3.2): checked, then ignored.
        if (f.payload.length !== 5) this.streamError(f.stream, H2Error.FRAME_SIZE_ERROR);
        return;
      case FrameType.RST_STREAM:
        this.onReset(f);
        return;
      case FrameType.SETTINGS:
        this.onSettings(f);
        return;
      case FrameType.PING:
        if (!(f.flags & Flag.ACK)) this.writer.pingAck(pingAck(f.payload));
        return;
      case FrameType.GOAWAY:
        // The client opens no more streams; the ones open still get their replies.
        this.goingAway = true;
        return;
      case FrameType.WINDOW_UPDATE:
        this.onWindowUpdate(f);
        return;
      default:
        // Unknown frame types are ignored (RFC 9113 section 4.1).
        return;
    }
  }

  private onData(f: Frame): void {
    // The whole frame, padding included, counts against the windows (RFC 9113 section 6.9.1).
    this.recvWindow -= f.payload.length;
    need(this.recvWindow >= 0, H2Error.FLOW_CONTROL_ERROR, 'connection window overrun');
    if (this.recvWindow < RECV_WINDOW.connection / 2) {
      this.writer.control(windowUpdateFrame(0, RECV_WINDOW.connection - this.recvWindow));
      this.recvWindow = RECV_WINDOW.connection;
    }
    const s = this.streams.get(f.stream);
    if (!s) {
      need(f.stream <= this.lastStream, H2Error.PROTOCOL_ERROR, 'DATA on an idle stream');
      // A stream we answered or reset: the client may not know yet (RFC 9113 section 5.1,
      // "closed"), so its frames are dropped, their octets counted on the connection above.
      return;
    }
    if (s.remoteEnded) {
      this.streamError(f.stream, H2Error.STREAM_CLOSED, s);
      return;
    }
    s.recvWindow -= f.payload.length;
    if (s.recvWindow < 0) {
      this.streamError(f.stream, H2Error.FLOW_CONTROL_ERROR, s);
      return;
    }
    const data = framePayload(f);
    const end = (f.flags & Flag.END_STREAM) !== 0;
    // Replenish as we consume: the request is buffered whole (its size is checked by the call).
    if (!end && s.recvWindow < RECV_WINDOW.stream / 2) {
      this.writer.control(windowUpdateFrame(s.id, RECV_WINDOW.stream - s.recvWindow));
      s.recvWindow = RECV_WINDOW.stream;
    }
    if (data.length > 0) s.events?.onData(data);
    if (end) this.remoteEnd(s);
  }

  /** A complete header block: a new request, or trailers ending one (RFC 9113 section 8.1). */
  private onBlock(b: HeaderBlock | undefined): void {
    if (!b) return;
    const end = b.endStream;
    const fields = b.fields;
    const existing = this.streams.get(b.stream);
    if (existing) {
      // Trailers from the client: they must end the stream (RFC 9113 section 8.1).
      if (existing.remoteEnded) {
        this.streamError(b.stream, H2Error.STREAM_CLOSED, existing);
        return;
      }
      if (!end) {
        this.streamError(b.stream, H2Error.PROTOCOL_ERROR, existing);
        return;
      }
      this.remoteEnd(existing);
      return;
    }
    if (b.stream % 2 === 0) {
      throw new H2ConnectionError(
        H2Error.PROTOCOL_ERROR,
        `stream ${b.stream} is even: clients open odd streams`,
      );
    }
    if (b.stream <= this.lastStream) {
      throw new H2ConnectionError(H2Error.STREAM_CLOSED, `HEADERS on closed stream ${b.stream}`);
    }
    this.lastStream = b.stream;
    if (this.goingAway) return void this.writeNow(rstStreamFrame(b.stream, H2Error.REFUSED_STREAM));
    if (this.streams.size >= this.opts.limits.maxConcurrentStreams) {
      return void this.writeNow(rstStreamFrame(b.stream, H2Error.REFUSED_STREAM));
    }
    const s = new H2Stream(b.stream, this, { send: this.peerInitialWindow, recv: RECV_WINDOW.stream });
    this.streams.set(b.stream, s);
    this.opts.onRequest(s, fields);
    if (end) this.remoteEnd(s);
  }

  private onReset(f: Frame): void {
    need(f.stream <= this.lastStream, H2Error.PROTOCOL_ERROR, 'RST_STREAM on an idle stream');
    const s = this.streams.get(f.stream);
    if (!s) return;
    this.forget(s);
    s.close(`the client reset the stream (code ${f.payload.readUInt32BE(0)})`);
  }

  private onSettings(f: Frame): void {
    if (f.flags & Flag.ACK) return;
    const next = applyPeerSettings(f.payload, {
      initialWindow: this.peerInitialWindow,
      maxFrame: this.writer.peerMaxFrame,
    });
    // A new initial window moves every open stream's window by the difference (section 6.9.2).
    const delta = next.initialWindow - this.peerInitialWindow;
    for (const s of this.streams.values()) {
      s.sendWindow += delta;
      if (s.sendWindow > MAX_WINDOW) this.streamError(s.id, H2Error.FLOW_CONTROL_ERROR, s);
    }
    this.peerInitialWindow = next.initialWindow;
    this.writer.peerMaxFrame = next.maxFrame;
    if (next.tableSize) this.writer.tableSizeChanged = true;
    this.writer.control(SETTINGS_ACK);
    if (delta > 0) this.writer.flush();
  }

  private onWindowUpdate(f: Frame): void {
    const inc = f.payload.readUInt32BE(0) & MAX_WINDOW;
    if (f.stream === 0) {
      need(inc !== 0, H2Error.PROTOCOL_ERROR, 'WINDOW_UPDATE of 0 on the connection');
      this.writer.sendWindow += inc;
      need(
        this.writer.sendWindow <= MAX_WINDOW,
        H2Error.FLOW_CONTROL_ERROR,
        'connection window above 2^31-1',
      );
    } else {
      const s = this.streams.get(f.stream);
      if (!s) return;
      if (inc === 0) {
        this.streamError(f.stream, H2Error.PROTOCOL_ERROR, s);
        return;
      }
      s.sendWindow += inc;
      if (s.sendWindow > MAX_WINDOW) {
        this.streamError(f.stream, H2Error.FLOW_CONTROL_ERROR, s);
        return;
      }
    }
    this.writer.flush();
  }

  private remoteEnd(s: H2Stream): void {
    s.remoteEnded = true;
    if (timingOn)
      s.marks = {
        recv: this.recvAt,
        cpu: this.recvCpu,
        idle: this.lastWriteAt ? this.recvAt - this.lastWriteAt : 0n,
      };
    s.events?.onEnd();
    this.maybeClose(s);
  }

  /** A stream error (RFC 9113 section 5.4.2): RST_STREAM, and the stream's call is aborted. */
  private streamError(id: number, code: H2Error, s?: H2Stream): void {
    if (s) this.resetStream(s, code);
    else this.writeNow(rstStreamFrame(id, code));
  }

  private maybeClose(s: H2Stream): void {
    if (s.localEnded && s.queue.length === 0 && !s.closed) {
      this.forget(s);
      s.close();
    }
  }

  private forget(s: H2Stream): void {
    this.streams.delete(s.id);
    this.writer.drop(s);
    if (this.goingAway && this.idle) queueMicrotask(() => this.end());
  }

  private end(): void {
    if (this.ended) return;
    this.ended = true;
    if (this.socket.destroyed) return;
    const controls = this.writer.takeControls();
    if (controls.length > 0) this.socket.end(Buffer.concat(controls));
    else this.socket.end();
  }

  /** Writes `frame` at once, after the connection frames the writer still holds (they were due first). */
  private writeNow(frame: Buffer): void {
    this.socket.write(this.withControls(frame));
  }

  private withControls(frame: Buffer): Buffer {
    const controls = this.writer.takeControls();
    return controls.length > 0 ? Buffer.concat([...controls, frame]) : frame;
  }

  private closeAll(reason: string): void {
    for (const s of [...this.streams.values()]) {
      this.forget(s);
      s.close(reason);
    }
  }
}

const SETTINGS_ACK = frame(FrameType.SETTINGS, Flag.ACK, 0);

/** The answer to a PING: the same 8 octets with ACK (RFC 9113 section 6.7). */
function pingAck(payload: Buffer): Buffer {
  return frame(FrameType.PING, Flag.ACK, 0, payload);
}
