/**
 * SPDY/3.1 framing (draft 3.1, section 2.2): an 8-byte header, then a payload. A control frame
 * starts with the control bit, version 3 and its type; a data frame with a 31-bit stream id. This
 * file only turns bytes into frames and back; header blocks stay compressed here (spdy-headers.ts).
 */

/** Control frame types of SPDY/3.1 (NOOP of SPDY/2 is gone; CREDENTIAL is never used here). */
export const FrameType = {
  SYN_STREAM: 1,
  SYN_REPLY: 2,
  RST_STREAM: 3,
  SETTINGS: 4,
  PING: 6,
  GOAWAY: 7,
  HEADERS: 8,
  WINDOW_UPDATE: 9,
} as const;
export type FrameType = (typeof FrameType)[keyof typeof FrameType];

/** FLAG_FIN on SYN_STREAM, SYN_REPLY, HEADERS and DATA: the sender's half of the stream ends. */
export const FLAG_FIN = 0x01;
/** FLAG_UNIDIRECTIONAL on SYN_STREAM: the receiver may not send on the stream. */
export const FLAG_UNIDIRECTIONAL = 0x02;

/** RST_STREAM status codes. */
export const RstStatus = {
  PROTOCOL_ERROR: 1,
  INVALID_STREAM: 2,
  REFUSED_STREAM: 3,
  UNSUPPORTED_VERSION: 4,
  CANCEL: 5,
  INTERNAL_ERROR: 6,
  FLOW_CONTROL_ERROR: 7,
  STREAM_IN_USE: 8,
  STREAM_ALREADY_CLOSED: 9,
  FRAME_TOO_LARGE: 11,
} as const;

/** GOAWAY status codes. */
export const GoAwayStatus = { OK: 0, PROTOCOL_ERROR: 1, INTERNAL_ERROR: 2 } as const;

/** SETTINGS id for a stream's initial send window. */
export const SETTINGS_INITIAL_WINDOW_SIZE = 7;
/** Both stream and session windows start at 64 KiB. */
export const DEFAULT_WINDOW = 65_536;
/** The largest payload a frame's 24-bit length can carry. */
export const MAX_FRAME_PAYLOAD = 0xffffff;

/** A decoded frame; `headerBlock` is still compressed. */
export type Frame =
  | { kind: 'data'; streamId: number; flags: number; data: Buffer }
  | {
      kind: 'syn_stream';
      streamId: number;
      associatedId: number;
      priority: number;
      flags: number;
      headerBlock: Buffer;
    }
  | { kind: 'syn_reply'; streamId: number; flags: number; headerBlock: Buffer }
  | { kind: 'headers'; streamId: number; flags: number; headerBlock: Buffer }
  | { kind: 'rst_stream'; streamId: number; status: number }
  | { kind: 'settings'; flags: number; entries: { flags: number; id: number; value: number }[] }
  | { kind: 'ping'; id: number }
  | { kind: 'goaway'; lastGoodStreamId: number; status: number }
  | { kind: 'window_update'; streamId: number; delta: number }
  | { kind: 'unknown'; type: number; version: number };

/** A malformed frame: the session answers with GOAWAY PROTOCOL_ERROR. */
export class SpdyProtocolError extends Error {
  override name = 'SpdyProtocolError';
}

function controlHeader(type: FrameType, flags: number, length: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt16BE(0x8000 | 3, 0);
  b.writeUInt16BE(type, 2);
  b.writeUInt32BE(((flags & 0xff) << 24) | length, 4);
  return b;
}

/** Encodes a DATA frame. */
export function encodeData(streamId: number, data: Buffer, flags = 0): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt32BE(streamId & 0x7fffffff, 0);
  b.writeUInt32BE(((flags & 0xff) << 24) | data.length, 4);
  return Buffer.concat([b, data]);
}

/** Encodes a SYN_STREAM frame around an already compressed header block. */
export function encodeSynStream(
  streamId: number,
  headerBlock: Buffer,
  opts: { flags?: number; associatedId?: number; priority?: number } = {},
): Buffer {
  const body = Buffer.alloc(10);
  body.writeUInt32BE(streamId & 0x7fffffff, 0);
  body.writeUInt32BE((opts.associatedId ?? 0) & 0x7fffffff, 4);
  body.writeUInt8(((opts.priority ?? 0) & 0x7) << 5, 8);
  return Buffer.concat([
    controlHeader(FrameType.SYN_STREAM, opts.flags ?? 0, 10 + headerBlock.length),
    body,
    headerBlock,
  ]);
}

/** Encodes a SYN_REPLY (or, with `type`, a HEADERS) frame around a compressed header block. */
export function encodeSynReply(
  streamId: number,
  headerBlock: Buffer,
  flags = 0,
  type: FrameType = FrameType.SYN_REPLY,
): Buffer {
  const id = Buffer.alloc(4);
  id.writeUInt32BE(streamId & 0x7fffffff, 0);
  return Buffer.concat([controlHeader(type, flags, 4 + headerBlock.length), id, headerBlock]);
}

function twoWords(type: FrameType, first: number, second: number): Buffer {
  const b = controlHeader(type, 0, 8);
  const body = Buffer.alloc(8);
  body.writeUInt32BE(first >>> 0, 0);
  body.writeUInt32BE(second >>> 0, 4);
  return Buffer.concat([b, body]);
}

/** Encodes RST_STREAM. */
export function encodeRstStream(streamId: number, status: number): Buffer {
  return twoWords(FrameType.RST_STREAM, streamId & 0x7fffffff, status);
}

/** Encodes GOAWAY. */
export function encodeGoAway(lastGoodStreamId: number, status: number): Buffer {
  return twoWords(FrameType.GOAWAY, lastGoodStreamId & 0x7fffffff, status);
}

/** Encodes WINDOW_UPDATE (stream 0 = the session window, SPDY/3.1). */
export function encodeWindowUpdate(streamId: number, delta: number): Buffer {
  return twoWords(FrameType.WINDOW_UPDATE, streamId & 0x7fffffff, delta & 0x7fffffff);
}

/** Encodes PING. */
export function encodePing(id: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(id >>> 0, 0);
  return Buffer.concat([controlHeader(FrameType.PING, 0, 4), b]);
}

/** Encodes SETTINGS. */
export function encodeSettings(entries: { id: number; value: number; flags?: number }[], flags = 0): Buffer {
  const body = Buffer.alloc(4 + 8 * entries.length);
  body.writeUInt32BE(entries.length, 0);
  entries.forEach((e, i) => {
    body.writeUInt32BE((((e.flags ?? 0) & 0xff) << 24) | (e.id & 0xffffff), 4 + 8 * i);
    body.writeUInt32BE(e.value >>> 0, 8 + 8 * i);
  });
  return Buffer.concat([controlHeader(FrameType.SETTINGS, flags, body.length), body]);
}

/**
 * Splits a byte stream into frames. Feed it chunks as they arrive; it returns the frames completed
 * so far and keeps the remainder. A frame longer than `maxPayload` is refused before it is buffered.
 */
export class FrameDecoder {
  private buffer: Buffer = Buffer.alloc(0);

  constructor(private readonly maxPayload = 1 << 20) {}

  push(chunk: Buffer): Frame[] {
    this.buffer = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk]);
    const frames: Frame[] = [];
    while (this.buffer.length >= 8) {
      const length = this.buffer.readUInt32BE(4) & 0xffffff;
      if (length > this.maxPayload) {
        throw new SpdyProtocolError(`SPDY frame of ${length} bytes exceeds the ${this.maxPayload} accepted`);
      }
      if (this.buffer.length < 8 + length) break;
      const frame = this.buffer.subarray(0, 8 + length);
      this.buffer = this.buffer.subarray(8 + length);
      frames.push(decodeFrame(frame));
    }
    return frames;
  }
}

function need(payload: Buffer, n: number, what: string): void {
  if (payload.length < n)
    throw new SpdyProtocolError(`SPDY ${what} frame has ${payload.length} bytes, needs ${n}`);
}

/** Decodes one whole frame (header and payload). */
export function decodeFrame(frame: Buffer): Frame {
  const first = frame.readUInt32BE(0);
  const flags = frame.readUInt8(4);
  const payload = frame.subarray(8);
  if ((first & 0x80000000) === 0) {
    return { kind: 'data', streamId: first & 0x7fffffff, flags, data: payload };
  }
  const version = (first >>> 16) & 0x7fff;
  const type = first & 0xffff;
  if (version !== 3) return { kind: 'unknown', type, version };
  switch (type) {
    case FrameType.SYN_STREAM:
      need(payload, 10, 'SYN_STREAM');
      return {
        kind: 'syn_stream',
        streamId: payload.readUInt32BE(0) & 0x7fffffff,
        associatedId: payload.readUInt32BE(4) & 0x7fffffff,
        priority: payload.readUInt8(8) >>> 5,
        flags,
        headerBlock: payload.subarray(10),
      };
    case FrameType.SYN_REPLY:
    case FrameType.HEADERS:
      need(payload, 4, type === FrameType.HEADERS ? 'HEADERS' : 'SYN_REPLY');
      return {
        kind: type === FrameType.HEADERS ? 'headers' : 'syn_reply',
        streamId: payload.readUInt32BE(0) & 0x7fffffff,
        flags,
        headerBlock: payload.subarray(4),
      };
    case FrameType.RST_STREAM:
      need(payload, 8, 'RST_STREAM');
      return {
        kind: 'rst_stream',
        streamId: payload.readUInt32BE(0) & 0x7fffffff,
        status: payload.readUInt32BE(4),
      };
    case FrameType.SETTINGS: {
      need(payload, 4, 'SETTINGS');
      const count = payload.readUInt32BE(0);
      need(payload, 4 + 8 * count, 'SETTINGS');
      const entries = [];
      for (let i = 0; i < count; i++) {
        const word = payload.readUInt32BE(4 + 8 * i);
        entries.push({ flags: word >>> 24, id: word & 0xffffff, value: payload.readUInt32BE(8 + 8 * i) });
      }
      return { kind: 'settings', flags, entries };
    }
    case FrameType.PING:
      need(payload, 4, 'PING');
      return { kind: 'ping', id: payload.readUInt32BE(0) };
    case FrameType.GOAWAY:
      need(payload, 8, 'GOAWAY');
      return {
        kind: 'goaway',
        lastGoodStreamId: payload.readUInt32BE(0) & 0x7fffffff,
        status: payload.readUInt32BE(4),
      };
    case FrameType.WINDOW_UPDATE:
      need(payload, 8, 'WINDOW_UPDATE');
      return {
        kind: 'window_update',
        streamId: payload.readUInt32BE(0) & 0x7fffffff,
        delta: payload.readUInt32BE(4) & 0x7fffffff,
      };
    default:
      return { kind: 'unknown', type, version };
  }
}
