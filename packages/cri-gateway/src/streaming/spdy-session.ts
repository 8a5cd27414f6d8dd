import { EventEmitter } from 'node:events';
import type { Duplex } from 'node:stream';
import {
  DEFAULT_WINDOW,
  encodeData,
  encodeGoAway,
  encodePing,
  encodeRstStream,
  encodeSynReply,
  encodeWindowUpdate,
  FLAG_FIN,
  FLAG_UNIDIRECTIONAL,
  type Frame,
  FrameDecoder,
  GoAwayStatus,
  RstStatus,
  SETTINGS_INITIAL_WINDOW_SIZE,
  SpdyProtocolError,
} from './spdy-frames.js';
import { SpdyHeaderCodec, type SpdyHeaders } from './spdy-headers.js';
import { SpdyStream } from './spdy-stream.js';
import { adoptUpgradedSocket } from './upgraded-socket.js';

/** Largest DATA payload the session sends in one frame. */
const MAX_DATA_CHUNK = 32 * 1024;

/** Decides on a new client stream: undefined accepts it, a string refuses it with that reason. */
export type StreamAcceptor = (stream: SpdyStream) => string | undefined;

/**
 * The server side of one SPDY/3.1 connection after the HTTP upgrade: parses frames, keeps the
 * client's streams, answers PING, keeps the header zlib streams, and writes frames in order.
 *
 * Flow control: the session grants the client window as its stream readers consume data, and
 * counts its own send windows. It waits for the client's WINDOW_UPDATE only once the client has
 * shown that it does flow control (a WINDOW_UPDATE or an initial-window SETTINGS), because the Go
 * library kubectl, crictl and kubelet use (spdystream) sends neither: a strict 64 KiB send window
 * would stall every exec that prints more than that.
 */
export class SpdySession extends EventEmitter {
  private readonly decoder = new FrameDecoder();
  private readonly codec = new SpdyHeaderCodec();
  private readonly streams = new Map<number, SpdyStream>();
  private readonly congested = new Set<number>();
  private inChain: Promise<void> = Promise.resolve();
  private outChain: Promise<void> = Promise.resolve();
  private lastClientStream = 0;
  private goingAway = false;
  private destroyed = false;
  private flowControl = false;
  private sessionSendWindow = DEFAULT_WINDOW;
  private initialSendWindow = DEFAULT_WINDOW;
  private windowWaiters: (() => void)[] = [];
  /** Resolves when the connection is gone. */
  readonly closed: Promise<void>;
  private readonly abort = new AbortController();

  constructor(
    private readonly socket: Duplex,
    private readonly accept: StreamAcceptor,
    idleTimeoutMs: number,
  ) {
    super();
    this.closed = adoptUpgradedSocket(
      socket,
      idleTimeoutMs,
      (chunk) => this.onBytes(chunk),
      () => this.teardown(),
    );
  }

  /** Aborts when the connection closes. */
  get signal(): AbortSignal {
    return this.abort.signal;
  }

  /** Feeds bytes that arrived before the session took the socket (the upgrade's `head`). */
  feed(head: Buffer): void {
    if (head.length > 0) this.onBytes(head);
  }

  /** Sends GOAWAY after everything queued, then ends the TCP connection; existing streams are done. */
  async goAway(status: number = GoAwayStatus.OK): Promise<void> {
    this.goingAway = true;
    await this.send(() => encodeGoAway(this.lastClientStream, status)).catch(() => undefined);
    if (!this.destroyed) this.socket.end();
    // A client that never closes its side must not hold the socket forever.
    setTimeout(() => this.socket.destroy(), 5_000).unref();
  }

  /** Drops the connection at once. */
  destroy(): void {
    this.socket.destroy();
  }

  /** Queues a frame behind every frame queued before it; resolves once the socket took it. */
  send(make: () => Buffer | Promise<Buffer>): Promise<void> {
    const next = this.outChain.then(async () => {
      if (this.destroyed) throw new Error('SPDY connection is closed');
      const frame = await make();
      if (!this.socket.write(frame)) await this.drained();
    });
    this.outChain = next.catch(() => undefined);
    return next;
  }

  /** Sends `data` on a stream in frames the send windows allow. */
  async writeData(stream: SpdyStream, data: Buffer, fin: boolean): Promise<void> {
    let offset = 0;
    do {
      const n = data.length === 0 ? 0 : await this.reserve(stream, data.length - offset);
      const chunk = data.subarray(offset, offset + n);
      offset += n;
      const last = offset >= data.length;
      await this.send(() => encodeData(stream.id, chunk, fin && last ? FLAG_FIN : 0));
    } while (offset < data.length);
  }

  /** Resets a stream (RST_STREAM) and forgets it. */
  reset(stream: SpdyStream, status: number): void {
    this.streams.delete(stream.id);
    void this.send(() => encodeRstStream(stream.id, status)).catch(() => undefined);
  }

  /** Grants the client `bytes` more window on a stream and on the session. */
  grant(stream: SpdyStream, bytes: number): void {
    if (bytes <= 0 || this.destroyed) return;
    void this.send(() =>
      Buffer.concat([encodeWindowUpdate(stream.id, bytes), encodeWindowUpdate(0, bytes)]),
    ).catch(() => undefined);
  }

  /** Forgets a stream both sides have finished. */
  forget(stream: SpdyStream): void {
    this.streams.delete(stream.id);
    this.congestion(stream, false);
  }

  /**
   * Marks a stream whose reader is behind. A client without flow control (spdystream) cannot be
   * told to wait, so the session stops reading the socket until the reader catches up, and TCP
   * pushes back. A client with flow control is held back by the windows instead: pausing would
   * also stop its WINDOW_UPDATEs and could deadlock output against input.
   */
  congestion(stream: SpdyStream, congested: boolean): void {
    if (congested && !this.flowControl) this.congested.add(stream.id);
    else this.congested.delete(stream.id);
    if (this.congested.size > 0) this.socket.pause();
    else this.socket.resume();
  }

  private async reserve(stream: SpdyStream, wanted: number): Promise<number> {
    while (this.flowControl && (stream.sendWindow <= 0 || this.sessionSendWindow <= 0)) {
      if (this.destroyed || stream.isReset) throw new Error(`SPDY stream ${stream.id} is closed`);
      await new Promise<void>((resolve) => this.windowWaiters.push(resolve));
    }
    let n = Math.min(wanted, MAX_DATA_CHUNK);
    if (this.flowControl) n = Math.min(n, stream.sendWindow, this.sessionSendWindow);
    stream.sendWindow -= n;
    this.sessionSendWindow -= n;
    return n;
  }

  private wakeWriters(): void {
    const waiters = this.windowWaiters;
    this.windowWaiters = [];
    for (const wake of waiters) wake();
  }

  private drained(): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        this.socket.off('drain', done);
        this.socket.off('close', done);
        resolve();
      };
      this.socket.on('drain', done);
      this.socket.on('close', done);
    });
  }

  private onBytes(chunk: Buffer): void {
    let frames: Frame[];
    try {
      frames = this.decoder.push(chunk);
    } catch (err) {
      this.protocolError(err);
      return;
    }
    for (const frame of frames) {
      this.inChain = this.inChain.then(() => this.onFrame(frame)).catch((err) => this.protocolError(err));
    }
  }

  private protocolError(err: unknown): void {
    if (this.destroyed) return;
    this.emit('protocolError', err instanceof Error ? err : new Error(String(err)));
    void this.goAway(GoAwayStatus.PROTOCOL_ERROR);
    setImmediate(() => this.socket.destroy());
  }

  private async onFrame(frame: Frame): Promise<void> {
    if (this.destroyed) return;
    switch (frame.kind) {
      case 'syn_stream':
        return this.onSynStream(frame);
      case 'syn_reply':
      case 'headers':
        // Clients do not reply to us (we open no streams), but the block must still pass through
        // the inflater, or every later block of the connection would decode wrong.
        await this.codec.decompress(frame.headerBlock);
        if (frame.kind === 'headers' && frame.flags & FLAG_FIN) this.streams.get(frame.streamId)?.remoteEnd();
        return;
      case 'data': {
        const stream = this.streams.get(frame.streamId);
        if (!stream) return; // data racing a reset we sent: drop it, as spdystream does
        stream.receive(frame.data);
        if (frame.flags & FLAG_FIN) stream.remoteEnd();
        return;
      }
      case 'rst_stream': {
        const stream = this.streams.get(frame.streamId);
        this.streams.delete(frame.streamId);
        stream?.remoteReset();
        if (stream) this.congestion(stream, false);
        this.wakeWriters();
        return;
      }
      case 'settings':
        for (const entry of frame.entries) {
          if (entry.id !== SETTINGS_INITIAL_WINDOW_SIZE) continue;
          const delta = entry.value - this.initialSendWindow;
          this.initialSendWindow = entry.value;
          for (const stream of this.streams.values()) stream.sendWindow += delta;
          this.flowControl = true;
        }
        this.wakeWriters();
        return;
      case 'window_update':
        this.flowControl = true;
        if (frame.streamId === 0) this.sessionSendWindow += frame.delta;
        else {
          const stream = this.streams.get(frame.streamId);
          if (stream) stream.sendWindow += frame.delta;
        }
        this.wakeWriters();
        return;
      case 'ping':
        // Client pings carry odd ids and are echoed; even ids would answer pings we never send.
        if (frame.id % 2 === 1) await this.send(() => encodePing(frame.id));
        return;
      case 'goaway':
        this.goingAway = true;
        return;
      case 'unknown':
        if (frame.version !== 3)
          throw new SpdyProtocolError(`SPDY version ${frame.version} is not supported`);
        return; // unknown control frames are ignored, as the draft requires
    }
  }

  private async onSynStream(frame: Extract<Frame, { kind: 'syn_stream' }>): Promise<void> {
    const headers: SpdyHeaders = await this.codec.decompress(frame.headerBlock);
    const id = frame.streamId;
    if (id % 2 === 0 || id <= this.lastClientStream) {
      throw new SpdyProtocolError(`SPDY client opened stream ${id} after ${this.lastClientStream}`);
    }
    this.lastClientStream = id;
    const stream = new SpdyStream(this, id, headers, this.initialSendWindow);
    if (this.goingAway) {
      void this.send(() => encodeRstStream(id, RstStatus.REFUSED_STREAM)).catch(() => undefined);
      return;
    }
    this.streams.set(id, stream);
    if (frame.flags & FLAG_FIN) stream.remoteEnd();
    if (frame.flags & FLAG_UNIDIRECTIONAL) stream.localEnded = true;
    const refusal = this.accept(stream);
    if (refusal !== undefined) {
      this.emit('refused', id, refusal);
      this.reset(stream, RstStatus.REFUSED_STREAM);
      stream.remoteReset();
      return;
    }
    stream.replied = this.send(async () => encodeSynReply(id, await this.codec.compress({})));
    await stream.replied.catch(() => undefined);
    this.emit('stream', stream);
  }

  private teardown(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.congested.clear();
    this.abort.abort(new Error('SPDY connection closed'));
    for (const stream of this.streams.values()) stream.remoteReset();
    this.streams.clear();
    this.wakeWriters();
    this.codec.close();
  }
}
