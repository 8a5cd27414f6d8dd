import type { Socket } from 'node:net';
import {
  DEFAULT_MAX_FRAME,
  Flag,
  FRAME_HEADER,
  type Frame,
  FrameReader,
  FrameType,
  frame,
  framePayload,
  goawayFrame,
  H2ConnectionError,
  H2Error,
  MAX_WINDOW,
  rstStreamFrame,
  settingsFrame,
  windowUpdateFrame,
  writeFrameHeader,
} from './h2-frames.js';
import { applyPeerSettings, RECV_WINDOW, SERVER_SETTINGS, type ServerLimits } from './h2-settings.js';
import { H2Stream, type StreamOwner } from './h2-stream.js';
import { type HeaderField, HpackDecoder } from './hpack.js';

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
  peerMaxFrame = DEFAULT_MAX_FRAME;
  private readonly reader: FrameReader;
  private readonly decoder: HpackDecoder;
  private peerInitialWindow = 65_535;
  private sendWindow = 65_535;
  private recvWindow = RECV_WINDOW.connection;
  private lastStream = 0;
  private block: { stream: number; flags: number; parts: Buffer[]; size: number } | undefined;
  private readonly sending = new Set<H2Stream>();
  private flushQueued = false;
  private goingAway = false;
  private ended = false;

  constructor(
    private readonly socket: Socket,
    private readonly opts: {
      onRequest: RequestListener;
      onProtocolError?: (err: Error) => void;
      limits: ServerLimits;
    },
  ) {
    this.reader = new FrameReader(DEFAULT_MAX_FRAME);
    this.decoder = new HpackDecoder({
      maxTableSize: 4096,
      maxListSize: opts.limits.maxHeaderListSize,
    });
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
    socket.on('drain', () => this.flush());
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
    this.socket.write(goawayFrame(this.lastStream, H2Error.NO_ERROR, 'server shutting down'));
    if (this.idle) this.end();
  }

  /** Ends the connection at once: every open stream is aborted. */
  destroy(): void {
    this.socket.destroy();
  }

  scheduleFlush(s: H2Stream): void {
    this.sending.add(s);
    if (this.flushQueued) return;
    this.flushQueued = true;
    queueMicrotask(() => this.flush());
  }

  resetStream(stream: H2Stream, code: H2Error): void {
    this.forget(stream);
    stream.close(code === H2Error.NO_ERROR ? undefined : 'the server reset the stream');
    if (!this.socket.destroyed) this.socket.write(rstStreamFrame(stream.id, code));
  }

  private receive(chunk: Buffer): void {
    try {
      for (const f of this.reader.push(chunk)) this.onFrame(f);
    } catch (err) {
      if (err instanceof H2ConnectionError) this.fail(err);
      else this.fail(new H2ConnectionError(H2Error.INTERNAL_ERROR, (err as Error).message));
    }
  }

  /** A connection error: GOAWAY with the code, then close (RFC 9113 section 5.4.1). */
  private fail(err: H2ConnectionError): void {
    this.opts.onProtocolError?.(err);
    if (this.socket.destroyed) return;
    this.closeAll(`connection error: ${err.message}`);
    this.socket.end(goawayFrame(this.lastStream, err.code, err.message), () => this.socket.destroy());
  }

  private onFrame(f: Frame): void {
    if (this.block && (f.type !== FrameType.CONTINUATION || f.stream !== this.block.stream)) {
      throw new H2ConnectionError(
        H2Error.PROTOCOL_ERROR,
        `header block of stream ${this.block.stream} interrupted`,
      );
    }
    switch (f.type) {
      case FrameType.DATA:
        this.onData(f);
        return;
      case FrameType.HEADERS:
        this.onHeaders(f);
        return;
      case FrameType.CONTINUATION:
        this.onContinuation(f);
        return;
      case FrameType.PRIORITY:
        // Priority is advisory and deprecated (RFC 9113 section 5.3.2): checked, then ignored.
        if (f.stream === 0) throw new H2ConnectionError(H2Error.PROTOCOL_ERROR, 'PRIORITY on stream 0');
        if (f.payload.length !== 5) this.streamError(f.stream, H2Error.FRAME_SIZE_ERROR);
        return;
      case FrameType.RST_STREAM:
        this.onReset(f);
        return;
      case FrameType.SETTINGS:
        this.onSettings(f);
        return;
      case FrameType.PING:
        if (f.stream !== 0) throw new H2ConnectionError(H2Error.PROTOCOL_ERROR, 'PING on a stream');
        if (f.payload.length !== 8)
          throw new H2ConnectionError(H2Error.FRAME_SIZE_ERROR, 'PING is not 8 octets');
        if (!(f.flags & Flag.ACK)) this.socket.write(pingAck(f.payload));
        return;
      case FrameType.GOAWAY:
        if (f.stream !== 0) throw new H2ConnectionError(H2Error.PROTOCOL_ERROR, 'GOAWAY on a stream');
        // The client opens no more streams; the ones open still get their replies.
        this.goingAway = true;
        return;
      case FrameType.WINDOW_UPDATE:
        this.onWindowUpdate(f);
        return;
      case FrameType.PUSH_PROMISE:
        throw new H2ConnectionError(H2Error.PROTOCOL_ERROR, 'a client sent PUSH_PROMISE');
      default:
        // Unknown frame types are ignored (RFC 9113 section 4.1).
        return;
    }
  }

  private onData(f: Frame): void {
    if (f.stream === 0) throw new H2ConnectionError(H2Error.PROTOCOL_ERROR, 'DATA on stream 0');
    // The whole frame, padding included, counts against the windows (RFC 9113 section 6.9.1).
    this.recvWindow -= f.payload.length;
    if (this.recvWindow < 0)
      throw new H2ConnectionError(H2Error.FLOW_CONTROL_ERROR, 'connection window overrun');
    if (this.recvWindow < RECV_WINDOW.connection / 2) {
      this.socket.write(windowUpdateFrame(0, RECV_WINDOW.connection - this.recvWindow));
      this.recvWindow = RECV_WINDOW.connection;
    }
    const s = this.streams.get(f.stream);
    if (!s) {
      if (f.stream > this.lastStream)
        throw new H2ConnectionError(H2Error.PROTOCOL_ERROR, 'DATA on an idle stream');
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
      this.socket.write(windowUpdateFrame(s.id, RECV_WINDOW.stream - s.recvWindow));
      s.recvWindow = RECV_WINDOW.stream;
    }
    if (data.length > 0) s.events?.onData(data);
    if (end) this.remoteEnd(s);
  }

  private onHeaders(f: Frame): void {
    if (f.stream === 0) throw new H2ConnectionError(H2Error.PROTOCOL_ERROR, 'HEADERS on stream 0');
    const fragment = framePayload(f);
    if (fragment.length > this.opts.limits.maxHeaderListSize) {
      throw new H2ConnectionError(H2Error.ENHANCE_YOUR_CALM, 'header block too large');
    }
    this.block = { stream: f.stream, flags: f.flags, parts: [fragment], size: fragment.length };
    if (f.flags & Flag.END_HEADERS) this.endBlock();
  }

  private onContinuation(f: Frame): void {
    if (!this.block) throw new H2ConnectionError(H2Error.PROTOCOL_ERROR, 'CONTINUATION without HEADERS');
    this.block.parts.push(f.payload);
    this.block.size += f.payload.length;
    if (this.block.size > this.opts.limits.maxHeaderListSize) {
      throw new H2ConnectionError(H2Error.ENHANCE_YOUR_CALM, 'header block too large');
    }
    if (f.flags & Flag.END_HEADERS) this.endBlock();
  }

  /** A complete header block: decoded always (the HPACK table must stay in step), then used. */
  private endBlock(): void {
    const b = this.block;
    if (!b) return;
    this.block = undefined;
    let fields: HeaderField[];
    try {
      fields = this.decoder.decode(b.parts.length === 1 ? (b.parts[0] as Buffer) : Buffer.concat(b.parts));
    } catch (err) {
      // The client's HPACK table is now unknown: the connection cannot continue (section 4.3).
      throw new H2ConnectionError(H2Error.COMPRESSION_ERROR, (err as Error).message);
    }
    const existing = this.streams.get(b.stream);
    const end = (b.flags & Flag.END_STREAM) !== 0;
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
    if (this.goingAway) return void this.socket.write(rstStreamFrame(b.stream, H2Error.REFUSED_STREAM));
    if (this.streams.size >= this.opts.limits.maxConcurrentStreams) {
      return void this.socket.write(rstStreamFrame(b.stream, H2Error.REFUSED_STREAM));
    }
    const s = new H2Stream(b.stream, this, { send: this.peerInitialWindow, recv: RECV_WINDOW.stream });
    this.streams.set(b.stream, s);
    this.opts.onRequest(s, fields);
    if (end) this.remoteEnd(s);
  }

  private onReset(f: Frame): void {
    if (f.stream === 0) throw new H2ConnectionError(H2Error.PROTOCOL_ERROR, 'RST_STREAM on stream 0');
    if (f.payload.length !== 4)
      throw new H2ConnectionError(H2Error.FRAME_SIZE_ERROR, 'RST_STREAM is not 4 octets');
    if (f.stream > this.lastStream)
      throw new H2ConnectionError(H2Error.PROTOCOL_ERROR, 'RST_STREAM on an idle stream');
    const s = this.streams.get(f.stream);
    if (!s) return;
    this.forget(s);
    s.close(`the client reset the stream (code ${f.payload.readUInt32BE(0)})`);
  }

  private onSettings(f: Frame): void {
    if (f.stream !== 0) throw new H2ConnectionError(H2Error.PROTOCOL_ERROR, 'SETTINGS on a stream');
    if (f.flags & Flag.ACK) {
      if (f.payload.length !== 0)
        throw new H2ConnectionError(H2Error.FRAME_SIZE_ERROR, 'SETTINGS ACK with a payload');
      return;
    }
    const next = applyPeerSettings(f.payload, {
      initialWindow: this.peerInitialWindow,
      maxFrame: this.peerMaxFrame,
    });
    // A new initial window moves every open stream's window by the difference (section 6.9.2).
    const delta = next.initialWindow - this.peerInitialWindow;
    for (const s of this.streams.values()) {
      s.sendWindow += delta;
      if (s.sendWindow > MAX_WINDOW) this.streamError(s.id, H2Error.FLOW_CONTROL_ERROR, s);
    }
    this.peerInitialWindow = next.initialWindow;
    this.peerMaxFrame = next.maxFrame;
    // The peer's HEADER_TABLE_SIZE needs nothing: our encoder never adds to its dynamic table.
    this.socket.write(SETTINGS_ACK);
    if (delta > 0) this.flush();
  }

  private onWindowUpdate(f: Frame): void {
    if (f.payload.length !== 4)
      throw new H2ConnectionError(H2Error.FRAME_SIZE_ERROR, 'WINDOW_UPDATE is not 4 octets');
    const inc = f.payload.readUInt32BE(0) & MAX_WINDOW;
    if (f.stream === 0) {
      if (inc === 0)
        throw new H2ConnectionError(H2Error.PROTOCOL_ERROR, 'WINDOW_UPDATE of 0 on the connection');
      this.sendWindow += inc;
      if (this.sendWindow > MAX_WINDOW)
        throw new H2ConnectionError(H2Error.FLOW_CONTROL_ERROR, 'connection window above 2^31-1');
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
    this.flush();
  }

  private remoteEnd(s: H2Stream): void {
    s.remoteEnded = true;
    s.events?.onEnd();
    this.maybeClose(s);
  }

  /** A stream error (RFC 9113 section 5.4.2): RST_STREAM, and the stream's call is aborted. */
  private streamError(id: number, code: H2Error, s?: H2Stream): void {
    if (s) this.resetStream(s, code);
    else this.socket.write(rstStreamFrame(id, code));
  }

  /**
   * Writes what the streams have queued, as far as the windows allow, in one socket write: a
   * unary reply's HEADERS, DATA and trailers leave together.
   */
  private flush(): void {
    this.flushQueued = false;
    if (this.socket.destroyed) return;
    const out: Buffer[] = [];
    for (const s of this.sending) {
      if (!s.closed) this.drain(s, out);
      if (s.closed || s.queue.length === 0) this.sending.delete(s);
    }
    if (out.length === 1) this.socket.write(out[0] as Buffer);
    else if (out.length > 1) this.socket.write(Buffer.concat(out));
    for (const s of this.streams.values()) s.wake();
    if (this.goingAway && this.idle) this.end();
  }

  private drain(s: H2Stream, out: Buffer[]): void {
    while (s.queue.length > 0) {
      const item = s.queue[0];
      if (!item) break;
      if (item.kind === 'headers') {
        out.push(item.frames);
        s.queue.shift();
        if (item.end) this.forgetWhenDone(s, out);
        continue;
      }
      const left = item.data.length - item.offset;
      const n = Math.min(left, this.sendWindow, s.sendWindow, this.peerMaxFrame);
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

  /** Our END_STREAM is out: the stream is done, or the client is still sending (RST NO_ERROR). */
  private forgetWhenDone(s: H2Stream, out: Buffer[]): void {
    this.forget(s);
    if (!s.remoteEnded) out.push(rstStreamFrame(s.id, H2Error.NO_ERROR));
    s.close();
  }

  private maybeClose(s: H2Stream): void {
    if (s.localEnded && s.queue.length === 0 && !s.closed) {
      this.forget(s);
      s.close();
    }
  }

  private forget(s: H2Stream): void {
    this.streams.delete(s.id);
    this.sending.delete(s);
    if (this.goingAway && this.idle) queueMicrotask(() => this.end());
  }

  private end(): void {
    if (this.ended) return;
    this.ended = true;
    if (!this.socket.destroyed) this.socket.end();
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
