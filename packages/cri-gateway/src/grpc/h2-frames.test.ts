import { describe, expect, it } from 'vitest';
import {
  checkFrame,
  Flag,
  FrameReader,
  FrameType,
  frame,
  framePayload,
  goawayFrame,
  H2ConnectionError,
  H2Error,
  headerFrames,
  PREFACE,
} from './h2-frames.js';
import { applyPeerSettings } from './h2-settings.js';

const codeOf = (fn: () => unknown): number | undefined => {
  try {
    fn();
  } catch (err) {
    return err instanceof H2ConnectionError ? err.code : -1;
  }
  return undefined;
};

describe('FrameReader', () => {
  it('checks the preface and cuts frames however the bytes are split', () => {
    const bytes = Buffer.concat([
      PREFACE,
      frame(FrameType.SETTINGS, 0, 0),
      frame(FrameType.PING, 0, 0, Buffer.from('12345678')),
      frame(FrameType.DATA, Flag.END_STREAM, 1, Buffer.from('hello')),
    ]);
    for (const step of [1, 7, 24, 30, bytes.length]) {
      const reader = new FrameReader(16_384);
      const frames = [];
      for (let at = 0; at < bytes.length; at += step)
        frames.push(...reader.push(bytes.subarray(at, at + step)));
      expect(frames.map((f) => [f.type, f.flags, f.stream, f.payload.toString()])).toEqual([
        [FrameType.SETTINGS, 0, 0, ''],
        [FrameType.PING, 0, 0, '12345678'],
        [FrameType.DATA, Flag.END_STREAM, 1, 'hello'],
      ]);
    }
  });

  it('refuses a preface that is not HTTP/2 at the first wrong octet', () => {
    const reader = new FrameReader(16_384);
    expect(reader.push(PREFACE.subarray(0, 10))).toEqual([]);
    expect(codeOf(() => reader.push(Buffer.from('X')))).toBe(H2Error.PROTOCOL_ERROR);
    expect(codeOf(() => new FrameReader(16_384).push(Buffer.from('GET / HTTP/1.1\r\n')))).toBe(
      H2Error.PROTOCOL_ERROR,
    );
  });

  it('refuses a frame longer than the advertised SETTINGS_MAX_FRAME_SIZE from its header alone', () => {
    const reader = new FrameReader(16_384);
    const head = frame(FrameType.DATA, 0, 1, Buffer.alloc(16_385)).subarray(0, 9);
    expect(codeOf(() => reader.push(Buffer.concat([PREFACE, head])))).toBe(H2Error.FRAME_SIZE_ERROR);
  });
});

describe('frames the server sends', () => {
  it('splits a header block over CONTINUATION frames at the peer frame size', () => {
    const block = Buffer.from('a'.repeat(40_000));
    const out = headerFrames(3, block, true, 16_384);
    const reader = new FrameReader(16_384);
    const frames = reader.push(Buffer.concat([PREFACE, out]));
    expect(frames.map((f) => [f.type, f.flags, f.stream, f.payload.length])).toEqual([
      [FrameType.HEADERS, Flag.END_STREAM, 3, 16_384],
      [FrameType.CONTINUATION, 0, 3, 16_384],
      [FrameType.CONTINUATION, Flag.END_HEADERS, 3, 40_000 - 2 * 16_384],
    ]);
    expect(Buffer.concat(frames.map((f) => f.payload))).toEqual(block);
    const one = new FrameReader(16_384).push(
      Buffer.concat([PREFACE, headerFrames(1, Buffer.of(0x88), false, 16_384)]),
    );
    expect(one.map((f) => [f.type, f.flags])).toEqual([[FrameType.HEADERS, Flag.END_HEADERS]]);
  });

  it('writes GOAWAY with the last stream, the code and debug text', () => {
    const [f] = new FrameReader(16_384).push(
      Buffer.concat([PREFACE, goawayFrame(7, H2Error.PROTOCOL_ERROR, 'bad')]),
    );
    expect(f?.payload.readUInt32BE(0)).toBe(7);
    expect(f?.payload.readUInt32BE(4)).toBe(H2Error.PROTOCOL_ERROR);
    expect(f?.payload.subarray(8).toString()).toBe('bad');
  });
});

describe('checkFrame', () => {
  const f = (type: number, stream: number, length: number, flags = 0) => ({
    type,
    flags,
    stream,
    payload: Buffer.alloc(length),
  });

  it('refuses frames on the wrong stream, of the wrong length, and PUSH_PROMISE', () => {
    for (const [frameOf, code] of [
      [f(FrameType.DATA, 0, 1), H2Error.PROTOCOL_ERROR],
      [f(FrameType.RST_STREAM, 0, 4), H2Error.PROTOCOL_ERROR],
      [f(FrameType.CONTINUATION, 0, 1), H2Error.PROTOCOL_ERROR],
      [f(FrameType.PING, 1, 8), H2Error.PROTOCOL_ERROR],
      [f(FrameType.SETTINGS, 3, 0), H2Error.PROTOCOL_ERROR],
      [f(FrameType.GOAWAY, 1, 8), H2Error.PROTOCOL_ERROR],
      [f(FrameType.PING, 0, 7), H2Error.FRAME_SIZE_ERROR],
      [f(FrameType.RST_STREAM, 1, 5), H2Error.FRAME_SIZE_ERROR],
      [f(FrameType.WINDOW_UPDATE, 0, 3), H2Error.FRAME_SIZE_ERROR],
      [f(FrameType.SETTINGS, 0, 6, Flag.ACK), H2Error.FRAME_SIZE_ERROR],
      [f(FrameType.SETTINGS, 0, 7), H2Error.FRAME_SIZE_ERROR],
      [f(FrameType.PUSH_PROMISE, 1, 4), H2Error.PROTOCOL_ERROR],
    ] as const) {
      expect(
        codeOf(() => checkFrame(frameOf)),
        `type ${frameOf.type}`,
      ).toBe(code);
    }
  });

  it('accepts well-formed frames, and unknown types anywhere', () => {
    for (const ok of [
      f(FrameType.DATA, 1, 0),
      f(FrameType.PING, 0, 8, Flag.ACK),
      f(FrameType.SETTINGS, 0, 12),
      f(FrameType.WINDOW_UPDATE, 0, 4),
      f(FrameType.WINDOW_UPDATE, 5, 4),
      f(0xfa, 0, 3),
      f(0xfa, 7, 3),
    ]) {
      expect(codeOf(() => checkFrame(ok))).toBeUndefined();
    }
  });
});

describe('framePayload', () => {
  it('strips padding and HEADERS priority fields, and refuses padding longer than the frame', () => {
    const padded = {
      type: FrameType.DATA,
      flags: Flag.PADDED,
      stream: 1,
      payload: Buffer.from('\x03abcXYZ', 'latin1'),
    };
    expect(framePayload(padded).toString()).toBe('abc');
    const prio = {
      type: FrameType.HEADERS,
      flags: Flag.PADDED | Flag.PRIORITY,
      stream: 1,
      payload: Buffer.concat([Buffer.of(2), Buffer.alloc(5), Buffer.from('hdr'), Buffer.alloc(2)]),
    };
    expect(framePayload(prio).toString()).toBe('hdr');
    const bad = { type: FrameType.DATA, flags: Flag.PADDED, stream: 1, payload: Buffer.of(9, 1, 2) };
    expect(codeOf(() => framePayload(bad))).toBe(H2Error.PROTOCOL_ERROR);
  });
});

describe('applyPeerSettings', () => {
  const setting = (id: number, value: number) => {
    const b = Buffer.alloc(6);
    b.writeUInt16BE(id, 0);
    b.writeUInt32BE(value, 2);
    return b;
  };
  const base = { initialWindow: 65_535, maxFrame: 16_384 };

  it('takes the initial window and frame size, ignoring unknown settings', () => {
    const payload = Buffer.concat([setting(4, 1000), setting(5, 32_768), setting(0x99, 1), setting(1, 0)]);
    expect(applyPeerSettings(payload, base)).toEqual({
      initialWindow: 1000,
      maxFrame: 32_768,
      tableSize: true,
    });
  });

  it('refuses values RFC 9113 section 6.5.2 forbids', () => {
    expect(codeOf(() => applyPeerSettings(setting(4, 2 ** 31), base))).toBe(H2Error.FLOW_CONTROL_ERROR);
    expect(codeOf(() => applyPeerSettings(setting(5, 100), base))).toBe(H2Error.PROTOCOL_ERROR);
    expect(codeOf(() => applyPeerSettings(setting(5, 2 ** 24), base))).toBe(H2Error.PROTOCOL_ERROR);
    expect(codeOf(() => applyPeerSettings(setting(2, 2), base))).toBe(H2Error.PROTOCOL_ERROR);
    expect(codeOf(() => applyPeerSettings(Buffer.alloc(7), base))).toBe(H2Error.FRAME_SIZE_ERROR);
  });
});
