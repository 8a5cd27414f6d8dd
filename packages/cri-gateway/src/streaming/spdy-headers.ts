import zlib from 'node:zlib';
import { SPDY3_DICTIONARY } from './spdy-dictionary.js';
import { SpdyProtocolError } from './spdy-frames.js';

/** SPDY headers: lowercase names, each with one or more values (NUL-separated on the wire). */
export type SpdyHeaders = Record<string, string[]>;

/** Largest decompressed header block accepted; a bigger one is a protocol error, not a buffer. */
const MAX_HEADER_BLOCK = 256 * 1024;

/** Serializes headers into an uncompressed SPDY/3 name/value block (32-bit counts and lengths). */
export function encodeHeaderBlock(headers: SpdyHeaders): Buffer {
  const names = Object.keys(headers);
  const parts: Buffer[] = [u32(names.length)];
  for (const name of names) {
    const n = Buffer.from(name.toLowerCase(), 'utf8');
    const v = Buffer.from((headers[name] ?? []).join('\0'), 'utf8');
    parts.push(u32(n.length), n, u32(v.length), v);
  }
  return Buffer.concat(parts);
}

/** Parses an uncompressed name/value block; names are lowercased as SPDY requires. */
export function decodeHeaderBlock(block: Buffer): SpdyHeaders {
  let at = 0;
  const take = (n: number, what: string): Buffer => {
    if (at + n > block.length) throw new SpdyProtocolError(`SPDY header block truncated in ${what}`);
    const b = block.subarray(at, at + n);
    at += n;
    return b;
  };
  const count = take(4, 'pair count').readUInt32BE(0);
  const headers: SpdyHeaders = {};
  for (let i = 0; i < count; i++) {
    const name = take(take(4, 'name length').readUInt32BE(0), 'name').toString('utf8').toLowerCase();
    const value = take(take(4, 'value length').readUInt32BE(0), 'value').toString('utf8');
    if (name.length === 0) throw new SpdyProtocolError('SPDY header block has an empty header name');
    headers[name] = [...(headers[name] ?? []), ...value.split('\0')];
  }
  return headers;
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0, 0);
  return b;
}

/**
 * One direction's zlib stream. SPDY compresses every header block of a connection and direction
 * with one continuous zlib stream, flushed (Z_SYNC_FLUSH) at the end of each block, so the
 * context must live as long as the session and blocks must be processed strictly in order.
 */
class ZlibContext {
  private chain: Promise<unknown> = Promise.resolve();
  private output: Buffer[] = [];
  private outputBytes = 0;
  private failure: Error | undefined;
  private fail: ((err: Error) => void) | undefined;

  constructor(private readonly stream: zlib.Deflate | zlib.Inflate) {
    stream.on('data', (chunk: Buffer) => {
      this.output.push(chunk);
      this.outputBytes += chunk.length;
      if (this.outputBytes > MAX_HEADER_BLOCK) {
        this.stop(new SpdyProtocolError(`SPDY header block inflates past ${MAX_HEADER_BLOCK} bytes`));
      }
    });
    stream.on('error', (err: Error) => this.stop(new SpdyProtocolError(`SPDY header block: ${err.message}`)));
  }

  /** Feeds one block through the stream and resolves with everything it produced for it. */
  run(input: Buffer): Promise<Buffer> {
    const next = this.chain.then(
      () =>
        new Promise<Buffer>((resolve, reject) => {
          if (this.failure) return reject(this.failure);
          this.output = [];
          this.outputBytes = 0;
          this.fail = reject;
          this.stream.write(input);
          this.stream.flush(zlib.constants.Z_SYNC_FLUSH, () => {
            this.fail = undefined;
            if (this.failure) return reject(this.failure);
            resolve(Buffer.concat(this.output));
          });
        }),
    );
    this.chain = next.catch(() => undefined);
    return next;
  }

  close(): void {
    this.stream.destroy();
  }

  private stop(err: Error): void {
    if (this.failure) return;
    this.failure = err;
    this.fail?.(err);
    this.stream.destroy();
  }
}

/** Compresses outgoing and decompresses incoming SPDY/3 header blocks of one connection. */
export class SpdyHeaderCodec {
  private readonly deflate = new ZlibContext(zlib.createDeflate({ dictionary: SPDY3_DICTIONARY }));
  private readonly inflate = new ZlibContext(zlib.createInflate({ dictionary: SPDY3_DICTIONARY }));

  /** The compressed block for `headers`, continuing this connection's outgoing zlib stream. */
  compress(headers: SpdyHeaders): Promise<Buffer> {
    return this.deflate.run(encodeHeaderBlock(headers));
  }

  /** The headers in a compressed block, continuing this connection's incoming zlib stream. */
  async decompress(block: Buffer): Promise<SpdyHeaders> {
    return decodeHeaderBlock(await this.inflate.run(block));
  }

  close(): void {
    this.deflate.close();
    this.inflate.close();
  }
}
