import { Readable, Writable } from 'node:stream';
import { RstStatus } from './spdy-frames.js';
import type { SpdyHeaders } from './spdy-headers.js';

/**
 * What a stream needs from the session that carries it (SpdySession implements it): declared here
 * so the stream does not import the session that imports it.
 */
export interface StreamCarrier {
  writeData(stream: SpdyStream, data: Buffer, fin: boolean): Promise<void>;
  reset(stream: SpdyStream, status: number): void;
  grant(stream: SpdyStream, bytes: number): void;
  forget(stream: SpdyStream): void;
  congestion(stream: SpdyStream, congested: boolean): void;
}

/**
 * One client-opened SPDY stream as the server sees it: the headers it was opened with, a Readable
 * of what the client sends (ending at its FIN or reset), and writes that become DATA frames.
 */
export class SpdyStream {
  /** Bytes the session may still send before the client must grant more (when it does flow control). */
  sendWindow: number;
  /** Resolves once SYN_REPLY is queued; data must not overtake it. */
  replied: Promise<void> = Promise.resolve();
  localEnded = false;
  remoteEnded = false;
  isReset = false;
  /** What the client sends on the stream. */
  readonly readable: Readable;
  private unacked = 0;

  constructor(
    private readonly session: StreamCarrier,
    readonly id: number,
    readonly headers: SpdyHeaders,
    sendWindow: number,
  ) {
    this.sendWindow = sendWindow;
    // Window is granted back as the consumer reads, so a slow consumer slows a compliant client.
    this.readable = new Readable({
      read: () => {
        this.session.congestion(this, false);
        this.ack();
      },
    });
  }

  /** The first value of a header, or undefined. */
  header(name: string): string | undefined {
    return this.headers[name.toLowerCase()]?.[0];
  }

  /** Called by the session with a DATA payload. */
  receive(data: Buffer): void {
    if (this.remoteEnded || this.isReset || data.length === 0) return;
    this.unacked += data.length;
    if (this.readable.push(data)) this.ack();
    else this.session.congestion(this, true);
  }

  /** Called by the session when the client half-closed the stream. */
  remoteEnd(): void {
    if (this.remoteEnded) return;
    this.remoteEnded = true;
    this.readable.push(null);
    this.session.congestion(this, false);
    if (this.localEnded) this.session.forget(this);
  }

  /** Called by the session when the stream was reset or the connection went away. */
  remoteReset(): void {
    this.isReset = true;
    this.localEnded = true;
    this.remoteEnd();
  }

  /** Sends bytes on the stream. */
  async write(data: Buffer): Promise<void> {
    if (this.localEnded || this.isReset) throw new Error(`SPDY stream ${this.id} is closed for writing`);
    await this.replied;
    if (data.length > 0) await this.session.writeData(this, data, false);
  }

  /** Half-closes the stream (DATA with FIN), optionally with last bytes; a second call does nothing. */
  async end(data: Buffer = Buffer.alloc(0)): Promise<void> {
    if (this.localEnded || this.isReset) return;
    this.localEnded = true;
    await this.replied;
    await this.session.writeData(this, data, true);
    if (this.remoteEnded) this.session.forget(this);
  }

  /** Resets the stream (RST_STREAM), ending both directions. */
  reset(status: number = RstStatus.CANCEL): void {
    if (this.isReset) return;
    this.session.reset(this, status);
    this.remoteReset();
  }

  /**
   * A Writable over the stream; ending the Writable does not half-close it (call end()). When the
   * client is gone the Writable is destroyed without an error: an 'error' event nobody listens to
   * would take the whole gateway down, and the backend learns of the loss from its AbortSignal.
   */
  writable(): Writable {
    const w: Writable = new Writable({
      write: (chunk: Buffer, _encoding, callback) => {
        this.write(chunk).then(
          () => callback(),
          () => {
            callback();
            w.destroy();
          },
        );
      },
    });
    return w;
  }

  private ack(): void {
    const n = this.unacked;
    this.unacked = 0;
    if (n > 0 && !this.isReset) this.session.grant(this, n);
  }
}
