import type { Socket } from 'node:net';
import { Duplex } from 'node:stream';
import { AuthorityRewriter, type RewriterLimits } from './authority-front.js';

/**
 * A client's connection as the HTTP/2 server sees it: bytes from the client go through an
 * AuthorityRewriter, bytes to the client go straight to the socket. Backpressure holds both ways:
 * the socket is paused while the server is not reading, and a write completes when the socket
 * has taken it. A header block that cannot be decoded ends the connection (its HPACK state is
 * gone); `onProtocolError` hears why.
 */
export class FrontSocket extends Duplex {
  private readonly rewriter: AuthorityRewriter;

  constructor(
    private readonly socket: Socket,
    opts: { limits?: RewriterLimits; onProtocolError?: (err: Error) => void } = {},
  ) {
    super({ allowHalfOpen: true });
    this.rewriter = new AuthorityRewriter(opts.limits);
    socket.on('data', (chunk: Buffer) => {
      let out: Buffer[];
      try {
        out = this.rewriter.push(chunk);
      } catch (err) {
        opts.onProtocolError?.(err as Error);
        this.destroy();
        return;
      }
      if (out.length === 0) return;
      const bytes = out.length === 1 ? (out[0] as Buffer) : Buffer.concat(out);
      if (!this.push(bytes)) socket.pause();
    });
    socket.on('end', () => this.push(null));
    socket.on('error', (err) => this.destroy(err));
    socket.on('close', () => {
      if (!this.destroyed) this.destroy();
    });
  }

  /** How many of this connection's header blocks had their authority replaced. */
  get rewritten(): number {
    return this.rewriter.rewritten;
  }

  override _read(): void {
    this.socket.resume();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (err?: Error | null) => void): void {
    // Done once the socket has buffered it: HTTP/2 sends nothing more until a write completes.
    if (this.socket.write(chunk)) callback();
    else this.socket.once('drain', () => callback());
  }

  override _writev(
    chunks: { chunk: Buffer; encoding: BufferEncoding }[],
    callback: (err?: Error | null) => void,
  ): void {
    this.socket.cork();
    for (let i = 0; i < chunks.length - 1; i++) this.socket.write(chunks[i]?.chunk ?? Buffer.alloc(0));
    const more = this.socket.write(chunks[chunks.length - 1]?.chunk ?? Buffer.alloc(0));
    this.socket.uncork();
    if (more) callback();
    else this.socket.once('drain', () => callback());
  }

  override _final(callback: (err?: Error | null) => void): void {
    this.socket.end(callback);
  }

  override _destroy(err: Error | null, callback: (err?: Error | null) => void): void {
    this.socket.destroy();
    callback(err);
  }
}
