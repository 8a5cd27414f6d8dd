import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { HpackDecoder } from '../grpc/hpack.js';
import { huffmanEncode } from '../grpc/hpack-huffman.js';

// An HTTP/2 client written frame by frame, so a test can send exactly what grpc-go sends over a
// unix socket (Node's own client refuses or rewrites some of it): the socket's path as :authority,
// or no :authority at all, Huffman-coded literals that grow the server-side dynamic table, and
// later requests that refer to that table by index.

export const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

export const FrameType = {
  DATA: 0x0,
  HEADERS: 0x1,
  RST_STREAM: 0x3,
  SETTINGS: 0x4,
  PING: 0x6,
  GOAWAY: 0x7,
  WINDOW_UPDATE: 0x8,
  CONTINUATION: 0x9,
} as const;

export const Flag = { END_STREAM: 0x1, ACK: 0x1, END_HEADERS: 0x4, PADDED: 0x8, PRIORITY: 0x20 } as const;

/** One HTTP/2 frame: a 9-octet header then the payload. */
export function frame(type: number, flags: number, streamId: number, payload: Buffer): Buffer {
  const head = Buffer.alloc(9);
  head.writeUIntBE(payload.length, 0, 3);
  head[3] = type;
  head[4] = flags;
  head.writeUInt32BE(streamId, 5);
  return Buffer.concat([head, payload]);
}

/** An HPACK integer with an N-bit prefix. */
export function hpackInt(value: number, prefix: number, flags: number): Buffer {
  const max = (1 << prefix) - 1;
  if (value < max) return Buffer.of(flags | value);
  const out = [flags | max];
  let rest = value - max;
  for (; rest >= 0x80; rest >>>= 7) out.push((rest & 0x7f) | 0x80);
  out.push(rest);
  return Buffer.from(out);
}

/** An HPACK string literal, Huffman-coded as grpc-go codes most of its strings. */
export function hpackString(s: string, huffman = true): Buffer {
  const raw = Buffer.from(s, 'latin1');
  const bytes = huffman ? huffmanEncode(raw) : raw;
  return Buffer.concat([hpackInt(bytes.length, 7, huffman ? 0x80 : 0), bytes]);
}

const STATIC_NAMES: Record<string, number> = {
  ':authority': 1,
  ':path': 4,
  'content-type': 31,
  'user-agent': 58,
};
const STATIC_FIELDS: Record<string, number> = { ':method\0POST': 3, ':scheme\0http': 6 };

/**
 * A client-side HPACK encoder shaped like grpc-go's: static matches are indexed, other fields are
 * literals with incremental indexing, and a field already in the dynamic table is sent as an index.
 */
export class GoLikeEncoder {
  private readonly table: string[] = [];

  encode(fields: readonly (readonly [string, string])[]): Buffer {
    const parts: Buffer[] = [];
    for (const [name, value] of fields) {
      const key = `${name}\0${value}`;
      const exact = STATIC_FIELDS[key];
      const dynamic = this.table.indexOf(key);
      if (exact !== undefined) parts.push(hpackInt(exact, 7, 0x80));
      else if (dynamic >= 0) parts.push(hpackInt(62 + dynamic, 7, 0x80));
      else {
        const nameIndex = STATIC_NAMES[name];
        parts.push(
          nameIndex ? hpackInt(nameIndex, 6, 0x40) : Buffer.concat([Buffer.of(0x40), hpackString(name)]),
        );
        parts.push(hpackString(value));
        this.table.unshift(key);
      }
    }
    return Buffer.concat(parts);
  }
}

/** The headers grpc-go 1.51 sends for a unary call, with the given :authority (or none). */
export function goHeaders(path: string, authority: string | undefined): [string, string][] {
  return [
    ...(authority === undefined ? [] : [[':authority', authority] as [string, string]]),
    [':method', 'POST'],
    [':scheme', 'http'],
    [':path', path],
    ['content-type', 'application/grpc'],
    ['user-agent', 'grpc-go/1.51.0'],
    ['te', 'trailers'],
    ['grpc-timeout', '1999862u'],
  ];
}

/** A gRPC message: the 5-octet length prefix (uncompressed) and the serialized message. */
export function grpcMessage(message: Buffer): Buffer {
  const head = Buffer.alloc(5);
  head.writeUInt32BE(message.length, 1);
  return Buffer.concat([head, message]);
}

/** What came back on one stream. */
export interface StreamResult {
  headers: Record<string, string>;
  trailers: Record<string, string>;
  data: Buffer;
  /** The RST_STREAM error code, if the server reset the stream. */
  rstCode: number | undefined;
}

/** A frame as the test client received it. */
export interface ReceivedFrame {
  type: number;
  flags: number;
  id: number;
  payload: Buffer;
}

/** One HTTP/2 connection to a unix socket, reading every frame the server sends. */
export class RawH2Connection {
  /** Every frame received, in order (payloads copied). */
  readonly frames: ReceivedFrame[] = [];
  private frameWaiters: { match: (f: ReceivedFrame) => boolean; resolve: (f: ReceivedFrame) => void }[] = [];
  private readonly decoder = new HpackDecoder({ maxTableSize: 4096, maxListSize: 65_536 });
  private readonly results = new Map<number, StreamResult & { done: () => void; ended: Promise<void> }>();
  private buf = Buffer.alloc(0);

  private constructor(private readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => this.read(chunk));
  }

  /** Connects and sends the preface with empty SETTINGS, as every client starts. */
  static async open(path: string): Promise<RawH2Connection> {
    const socket = connect(path);
    await once(socket, 'connect');
    socket.write(Buffer.concat([PREFACE, frame(FrameType.SETTINGS, 0, 0, Buffer.alloc(0))]));
    return new RawH2Connection(socket);
  }

  /** Writes raw bytes (frames built by the test). */
  write(bytes: Buffer): void {
    this.socket.write(bytes);
  }

  /** Resolves when the stream ends (END_STREAM or RST_STREAM) with all it received. */
  result(streamId: number): Promise<StreamResult> {
    const r = this.stream(streamId);
    return r.ended.then(() => ({
      headers: r.headers,
      trailers: r.trailers,
      data: r.data,
      rstCode: r.rstCode,
    }));
  }

  /** Resolves when the server has closed the connection. */
  closed(): Promise<void> {
    if (this.socket.closed) return Promise.resolve();
    return once(this.socket, 'close').then(() => undefined);
  }

  close(): void {
    this.socket.destroy();
  }

  /** Resolves with the first frame received (already, or later) that `match` accepts. */
  waitFrame(match: (f: ReceivedFrame) => boolean): Promise<ReceivedFrame> {
    const seen = this.frames.find(match);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve) => this.frameWaiters.push({ match, resolve }));
  }

  private stream(id: number) {
    let r = this.results.get(id);
    if (!r) {
      let done: () => void = () => undefined;
      const ended = new Promise<void>((resolve) => {
        done = resolve;
      });
      r = { headers: {}, trailers: {}, data: Buffer.alloc(0), rstCode: undefined, done, ended };
      this.results.set(id, r);
    }
    return r;
  }

  private read(chunk: Buffer): void {
    this.buf = Buffer.concat([this.buf, chunk]);
    while (this.buf.length >= 9) {
      const length = this.buf.readUIntBE(0, 3);
      if (this.buf.length < 9 + length) return;
      const type = this.buf[3] ?? 0;
      const flags = this.buf[4] ?? 0;
      const id = this.buf.readUInt32BE(5) & 0x7fffffff;
      const payload = this.buf.subarray(9, 9 + length);
      this.buf = this.buf.subarray(9 + length);
      this.onFrame(type, flags, id, payload);
    }
  }

  private onFrame(type: number, flags: number, id: number, payload: Buffer): void {
    const f = { type, flags, id, payload: Buffer.from(payload) };
    this.frames.push(f);
    this.frameWaiters = this.frameWaiters.filter((w) => {
      if (!w.match(f)) return true;
      w.resolve(f);
      return false;
    });
    if (type === FrameType.SETTINGS && !(flags & Flag.ACK)) {
      this.socket.write(frame(FrameType.SETTINGS, Flag.ACK, 0, Buffer.alloc(0)));
    } else if (type === FrameType.PING && !(flags & Flag.ACK)) {
      this.socket.write(frame(FrameType.PING, Flag.ACK, 0, payload));
    } else if (type === FrameType.HEADERS) {
      // Node's server sends each header block in one frame, unpadded and without priority.
      const r = this.stream(id);
      const fields = this.decoder.decode(payload);
      const target = Object.keys(r.headers).length ? r.trailers : r.headers;
      for (const f of fields) target[f.name] = f.value;
      if (flags & Flag.END_STREAM) r.done();
    } else if (type === FrameType.DATA) {
      const r = this.stream(id);
      r.data = Buffer.concat([r.data, payload]);
      if (flags & Flag.END_STREAM) r.done();
    } else if (type === FrameType.RST_STREAM) {
      const r = this.stream(id);
      r.rstCode = payload.readUInt32BE(0);
      r.done();
    }
  }
}
