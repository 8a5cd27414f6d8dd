// The HTTP/2 frame layer (RFC 9113 section 4 and 6) of berth's own gRPC server: splitting the
// bytes a client sends into frames, and building the frames the server sends. It knows nothing of
// streams or gRPC; connection.ts gives frames their meaning.

/** The client connection preface (RFC 9113 section 3.4). */
export const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

/** Octets of a frame header: 24-bit length, type, flags, 31-bit stream id. */
export const FRAME_HEADER = 9;

/** Frame types (RFC 9113 section 6). */
export const FrameType = {
  DATA: 0x0,
  HEADERS: 0x1,
  PRIORITY: 0x2,
  RST_STREAM: 0x3,
  SETTINGS: 0x4,
  PUSH_PROMISE: 0x5,
  PING: 0x6,
  GOAWAY: 0x7,
  WINDOW_UPDATE: 0x8,
  CONTINUATION: 0x9,
} as const;
export type FrameType = (typeof FrameType)[keyof typeof FrameType];

/** Frame flags; ACK shares END_STREAM's bit on SETTINGS and PING. */
export const Flag = { END_STREAM: 0x1, ACK: 0x1, END_HEADERS: 0x4, PADDED: 0x8, PRIORITY: 0x20 } as const;

/** Error codes of RST_STREAM and GOAWAY (RFC 9113 section 7). */
export const H2Error = {
  NO_ERROR: 0x0,
  PROTOCOL_ERROR: 0x1,
  INTERNAL_ERROR: 0x2,
  FLOW_CONTROL_ERROR: 0x3,
  STREAM_CLOSED: 0x5,
  FRAME_SIZE_ERROR: 0x6,
  REFUSED_STREAM: 0x7,
  CANCEL: 0x8,
  COMPRESSION_ERROR: 0x9,
  ENHANCE_YOUR_CALM: 0xb,
} as const;
export type H2Error = (typeof H2Error)[keyof typeof H2Error];

/** SETTINGS identifiers (RFC 9113 section 6.5.2). */
export const Setting = {
  HEADER_TABLE_SIZE: 0x1,
  ENABLE_PUSH: 0x2,
  MAX_CONCURRENT_STREAMS: 0x3,
  INITIAL_WINDOW_SIZE: 0x4,
  MAX_FRAME_SIZE: 0x5,
  MAX_HEADER_LIST_SIZE: 0x6,
} as const;

/** The smallest SETTINGS_MAX_FRAME_SIZE, and every peer's until it says otherwise. */
export const DEFAULT_MAX_FRAME = 16_384;

/** The largest flow-control window (2^31 - 1). */
export const MAX_WINDOW = 0x7fff_ffff;

/** One frame as read: its payload is a view into the bytes received, valid until the next push. */
export interface Frame {
  type: number;
  flags: number;
  stream: number;
  payload: Buffer;
}

/**
 * A connection error (RFC 9113 section 5.4.1): the connection must end with GOAWAY carrying
 * `code`. The message says what the peer did, for the log and GOAWAY's debug data.
 */
export class H2ConnectionError extends Error {
  constructor(
    readonly code: H2Error,
    message: string,
  ) {
    super(message);
    this.name = 'H2ConnectionError';
  }
}

/**
 * Splits a client's byte stream into frames: first checks the connection preface, then cuts
 * frames, refusing one longer than the largest the server advertised (a FRAME_SIZE_ERROR).
 * Bytes of a partial frame are kept until the rest arrives.
 */
export class FrameReader {
  private pending: Buffer | undefined;
  private prefaced = false;

  constructor(private readonly maxFrameSize: number) {}

  /** Frames complete after `chunk`; throws H2ConnectionError on a bad preface or oversize frame. */
  push(chunk: Buffer): Frame[] {
    let buf = this.pending ? Buffer.concat([this.pending, chunk]) : chunk;
    this.pending = undefined;
    if (!this.prefaced) {
      const n = Math.min(buf.length, PREFACE.length);
      if (buf.compare(PREFACE, 0, n, 0, n) !== 0) {
        throw new H2ConnectionError(H2Error.PROTOCOL_ERROR, 'connection preface is not HTTP/2');
      }
      if (buf.length < PREFACE.length) {
        this.pending = buf;
        return [];
      }
      this.prefaced = true;
      buf = buf.subarray(PREFACE.length);
    }
    const frames: Frame[] = [];
    let pos = 0;
    while (buf.length - pos >= FRAME_HEADER) {
      const length = buf.readUIntBE(pos, 3);
      if (length > this.maxFrameSize) {
        throw new H2ConnectionError(
          H2Error.FRAME_SIZE_ERROR,
          `frame of ${length} octets exceeds SETTINGS_MAX_FRAME_SIZE ${this.maxFrameSize}`,
        );
      }
      if (buf.length - pos < FRAME_HEADER + length) break;
      frames.push({
        type: buf[pos + 3] ?? 0,
        flags: buf[pos + 4] ?? 0,
        stream: buf.readUInt32BE(pos + 5) & MAX_WINDOW,
        payload: buf.subarray(pos + FRAME_HEADER, pos + FRAME_HEADER + length),
      });
      pos += FRAME_HEADER + length;
    }
    // A copy, so the caller's chunk (and the views handed out above) may be released.
    if (pos < buf.length) this.pending = Buffer.from(buf.subarray(pos));
    return frames;
  }
}

/** Writes a frame header at `at` in `out`; returns the offset after it. */
export function writeFrameHeader(
  out: Buffer,
  at: number,
  f: { length: number; type: number; flags: number; stream: number },
): number {
  out.writeUIntBE(f.length, at, 3);
  out[at + 3] = f.type;
  out[at + 4] = f.flags;
  out.writeUInt32BE(f.stream, at + 5);
  return at + FRAME_HEADER;
}

/** One whole frame with its payload. */
export function frame(
  type: number,
  flags: number,
  stream: number,
  payload: Buffer = Buffer.alloc(0),
): Buffer {
  const out = Buffer.allocUnsafe(FRAME_HEADER + payload.length);
  writeFrameHeader(out, 0, { length: payload.length, type, flags, stream });
  payload.copy(out, FRAME_HEADER);
  return out;
}

/** A SETTINGS frame with the given identifier/value pairs. */
export function settingsFrame(settings: readonly (readonly [number, number])[]): Buffer {
  const payload = Buffer.allocUnsafe(6 * settings.length);
  settings.forEach(([id, value], i) => {
    payload.writeUInt16BE(id, 6 * i);
    payload.writeUInt32BE(value, 6 * i + 2);
  });
  return frame(FrameType.SETTINGS, 0, 0, payload);
}

/** A WINDOW_UPDATE granting `increment` octets on `stream` (0: the connection). */
export function windowUpdateFrame(stream: number, increment: number): Buffer {
  const payload = Buffer.allocUnsafe(4);
  payload.writeUInt32BE(increment, 0);
  return frame(FrameType.WINDOW_UPDATE, 0, stream, payload);
}

/** An RST_STREAM ending `stream` with `code`. */
export function rstStreamFrame(stream: number, code: H2Error): Buffer {
  const payload = Buffer.allocUnsafe(4);
  payload.writeUInt32BE(code, 0);
  return frame(FrameType.RST_STREAM, 0, stream, payload);
}

/** A GOAWAY naming the last stream the server will process, with a code and debug text. */
export function goawayFrame(lastStream: number, code: H2Error, debug = ''): Buffer {
  const text = Buffer.from(debug, 'utf8');
  const payload = Buffer.allocUnsafe(8 + text.length);
  payload.writeUInt32BE(lastStream, 0);
  payload.writeUInt32BE(code, 4);
  text.copy(payload, 8);
  return frame(FrameType.GOAWAY, 0, 0, payload);
}

/**
 * A header block as frames: one HEADERS, then CONTINUATIONs when the block is larger than the
 * peer's SETTINGS_MAX_FRAME_SIZE. END_STREAM goes on the HEADERS frame (RFC 9113 section 6.2).
 */
export function headerFrames(stream: number, block: Buffer, endStream: boolean, maxFrame: number): Buffer {
  const count = Math.max(1, Math.ceil(block.length / maxFrame));
  const out = Buffer.allocUnsafe(count * FRAME_HEADER + block.length);
  let pos = 0;
  for (let i = 0; i < count; i++) {
    const part = block.subarray(i * maxFrame, (i + 1) * maxFrame);
    let flags = i === count - 1 ? Flag.END_HEADERS : 0;
    if (i === 0 && endStream) flags |= Flag.END_STREAM;
    pos = writeFrameHeader(out, pos, {
      length: part.length,
      type: i === 0 ? FrameType.HEADERS : FrameType.CONTINUATION,
      flags,
      stream,
    });
    pos += part.copy(out, pos);
  }
  return out;
}

/**
 * Strips padding (RFC 9113 section 6.1 and 6.2) from a DATA or HEADERS payload, and a HEADERS
 * frame's priority fields; throws PROTOCOL_ERROR when the padding is as long as the frame.
 */
export function framePayload(f: Frame): Buffer {
  let start = 0;
  let end = f.payload.length;
  if (f.flags & Flag.PADDED) {
    const pad = f.payload[0] ?? 0;
    start = 1;
    end -= pad;
  }
  if (f.type === FrameType.HEADERS && f.flags & Flag.PRIORITY) start += 5;
  if (end < start) {
    throw new H2ConnectionError(
      H2Error.PROTOCOL_ERROR,
      `frame on stream ${f.stream} has more padding than payload`,
    );
  }
  return f.payload.subarray(start, end);
}

/** Throws the connection error `code` unless `ok`: the checks RFC 9113 asks of each frame. */
export function need(ok: boolean, code: H2Error, message: string): void {
  if (!ok) throw new H2ConnectionError(code, message);
}

// Frames that belong to a stream, and frames that belong to the connection (stream 0).
const ON_STREAM = new Set<number>([
  FrameType.DATA,
  FrameType.HEADERS,
  FrameType.PRIORITY,
  FrameType.RST_STREAM,
  FrameType.CONTINUATION,
]);
const ON_CONNECTION = new Set<number>([FrameType.SETTINGS, FrameType.PING, FrameType.GOAWAY]);
const FIXED_LENGTH: Partial<Record<number, number>> = {
  [FrameType.RST_STREAM]: 4,
  [FrameType.PING]: 8,
  [FrameType.WINDOW_UPDATE]: 4,
};

/**
 * Checks what RFC 9113 section 6 asks of a client's frame whatever the connection's state: the
 * stream it may be on, its fixed length, and no PUSH_PROMISE from a client. Throws the
 * connection error. (A PRIORITY of the wrong length is only a stream error: left to the caller.)
 */
export function checkFrame(f: Frame): void {
  need(!ON_STREAM.has(f.type) || f.stream !== 0, H2Error.PROTOCOL_ERROR, `frame type ${f.type} on stream 0`);
  need(
    !ON_CONNECTION.has(f.type) || f.stream === 0,
    H2Error.PROTOCOL_ERROR,
    `frame type ${f.type} on a stream`,
  );
  const length = FIXED_LENGTH[f.type];
  need(
    length === undefined || f.payload.length === length,
    H2Error.FRAME_SIZE_ERROR,
    `frame type ${f.type} is not ${length} octets`,
  );
  need(f.type !== FrameType.PUSH_PROMISE, H2Error.PROTOCOL_ERROR, 'a client sent PUSH_PROMISE');
  if (f.type === FrameType.SETTINGS) {
    const ack = (f.flags & Flag.ACK) !== 0;
    need(
      ack ? f.payload.length === 0 : f.payload.length % 6 === 0,
      H2Error.FRAME_SIZE_ERROR,
      'SETTINGS of a bad length',
    );
  }
}
