import zlib from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { SPDY3_DICTIONARY, SPDY3_DICTIONARY_ID } from './spdy-dictionary.js';
import {
  decodeFrame,
  encodeData,
  encodeGoAway,
  encodeRstStream,
  encodeSettings,
  encodeSynStream,
  encodeWindowUpdate,
  FrameDecoder,
  SpdyProtocolError,
} from './spdy-frames.js';
import { SpdyHeaderCodec } from './spdy-headers.js';

/** Adler-32 (RFC 1950 section 8.2), written out here so the check does not trust zlib alone. */
function adler32(bytes: Buffer): number {
  let a = 1;
  let b = 0;
  for (const x of bytes) {
    a = (a + x) % 65_521;
    b = (b + a) % 65_521;
  }
  return ((b << 16) | a) >>> 0;
}

describe('SPDY/3 header dictionary', () => {
  it('is the 1423 bytes whose adler32 is the documented DICTID 0xe3c6a7c2', () => {
    expect(SPDY3_DICTIONARY.length).toBe(1423);
    expect(adler32(SPDY3_DICTIONARY)).toBe(0xe3c6a7c2);
    expect(SPDY3_DICTIONARY_ID).toBe(0xe3c6a7c2);
  });

  it('makes zlib write DICTID e3 c6 a7 c2 after the stream header, as every SPDY/3 peer expects', () => {
    const out = zlib.deflateSync(Buffer.from('x'), { dictionary: SPDY3_DICTIONARY });
    expect((out[1] ?? 0) & 0x20).toBe(0x20); // FDICT
    expect(out.subarray(2, 6).toString('hex')).toBe('e3c6a7c2');
  });

  it("decodes a SYN_STREAM compressed by another implementation (Chromium's SPDY/3 framer test vector)", async () => {
    // SYN_STREAM stream 1, priority 4, headers {bar: foo, foo: bar}, as Chromium's framer emitted it.
    const chromium = Buffer.from(
      '80030001000000370000000100000000800038eae3c6a7c202e50e50c24b4a04e50b6680004acbcf07082010' +
        '95969f0fa200022829b108208000000000ffff',
      'hex',
    );
    const frame = decodeFrame(chromium);
    expect(frame).toMatchObject({ kind: 'syn_stream', streamId: 1, associatedId: 0, priority: 4, flags: 0 });
    const codec = new SpdyHeaderCodec();
    if (frame.kind !== 'syn_stream') throw new Error('not a SYN_STREAM');
    expect(await codec.decompress(frame.headerBlock)).toEqual({ bar: ['foo'], foo: ['bar'] });
    codec.close();
  });
});

describe('SPDY/3.1 frames', () => {
  it('lays out control frames as draft 3.1 section 2.6 says', () => {
    // control bit + version 3, type 3, flags 0, length 8, stream 5, status CANCEL (5)
    expect(encodeRstStream(5, 5).toString('hex')).toBe('80030003000000080000000500000005');
    expect(encodeGoAway(7, 0).toString('hex')).toBe('80030007000000080000000700000000');
    expect(encodeWindowUpdate(0, 65_536).toString('hex')).toBe('80030009000000080000000000010000');
    expect(encodeSettings([{ id: 7, value: 1024 }]).toString('hex')).toBe(
      '800300040000000c000000010000000700000400',
    );
    expect(encodeData(3, Buffer.from('hi'), 1).toString('hex')).toBe('00000003010000026869');
  });

  it('round-trips SYN_STREAM with priority, flags and an associated stream', () => {
    const frame = decodeFrame(
      encodeSynStream(9, Buffer.from('block'), { flags: 3, associatedId: 2, priority: 7 }),
    );
    expect(frame).toEqual({
      kind: 'syn_stream',
      streamId: 9,
      associatedId: 2,
      priority: 7,
      flags: 3,
      headerBlock: Buffer.from('block'),
    });
  });

  it('splits a byte stream into frames across arbitrary chunk boundaries', () => {
    const bytes = Buffer.concat([
      encodeData(1, Buffer.from('abc')),
      encodeRstStream(1, 5),
      encodeData(3, Buffer.alloc(0), 1),
    ]);
    const decoder = new FrameDecoder();
    const frames = [...bytes].flatMap((byte) => decoder.push(Buffer.from([byte])));
    expect(frames.map((f) => f.kind)).toEqual(['data', 'rst_stream', 'data']);
    expect(frames[0]).toMatchObject({ streamId: 1, data: Buffer.from('abc') });
  });

  it('refuses a frame larger than the limit before buffering it', () => {
    const header = Buffer.from('0000000100ffffff', 'hex');
    expect(() => new FrameDecoder(1024).push(header)).toThrow(SpdyProtocolError);
  });

  it('rejects a truncated control frame', () => {
    expect(() => decodeFrame(Buffer.from('800300030000000400000005', 'hex'))).toThrow(SpdyProtocolError);
  });

  it('keeps one zlib stream per direction across header blocks', async () => {
    const client = new SpdyHeaderCodec();
    const server = new SpdyHeaderCodec();
    for (const streamType of ['error', 'stdin', 'stdout', 'stderr']) {
      const block = await client.compress({ streamtype: [streamType], multi: ['a', 'b'] });
      expect(await server.decompress(block)).toEqual({ streamtype: [streamType], multi: ['a', 'b'] });
    }
    client.close();
    server.close();
  });
});
