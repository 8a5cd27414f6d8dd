import { describe, expect, it } from 'vitest';
import { Flag, FrameType, frame, GoLikeEncoder, goHeaders, hpackInt, PREFACE } from '../testdata/raw-h2.js';
import { AuthorityRewriter, fixAuthority, isValidAuthority } from './authority-front.js';
import { type HeaderField, HpackDecoder } from './hpack.js';

const SOCK = '/run/berth/cri.sock';
const PATH = '/runtime.v1.RuntimeService/Version';

interface Frame {
  type: number;
  flags: number;
  id: number;
  payload: Buffer;
}

/** Splits what the rewriter produced back into the preface and frames. */
function parse(bytes: Buffer): { preface: Buffer; frames: Frame[] } {
  const frames: Frame[] = [];
  let pos = PREFACE.length;
  while (pos < bytes.length) {
    const length = bytes.readUIntBE(pos, 3);
    frames.push({
      type: bytes[pos + 3] ?? -1,
      flags: bytes[pos + 4] ?? -1,
      id: bytes.readUInt32BE(pos + 5),
      payload: bytes.subarray(pos + 9, pos + 9 + length),
    });
    pos += 9 + length;
  }
  return { preface: bytes.subarray(0, PREFACE.length), frames };
}

const run = (r: AuthorityRewriter, input: Buffer) => Buffer.concat(r.push(input));

/** Feeds the input one octet at a time, the worst split a socket can deliver. */
const runBytewise = (r: AuthorityRewriter, input: Buffer) =>
  Buffer.concat([...input].flatMap((b) => r.push(Buffer.of(b))));

function conversation(): Buffer {
  const enc = new GoLikeEncoder();
  const settings = frame(FrameType.SETTINGS, 0, 0, Buffer.from('000300000064', 'hex'));
  const parts = [PREFACE, settings];
  for (const id of [1, 3, 5]) {
    parts.push(frame(FrameType.HEADERS, Flag.END_HEADERS, id, enc.encode(goHeaders(PATH, SOCK))));
    parts.push(frame(FrameType.DATA, Flag.END_STREAM, id, Buffer.from(`body of ${id}`)));
  }
  parts.push(frame(FrameType.WINDOW_UPDATE, 0, 0, Buffer.from('00010000', 'hex')));
  return Buffer.concat(parts);
}

describe('AuthorityRewriter', () => {
  it('replaces a path authority in every request and forwards every other frame untouched', () => {
    const input = conversation();
    for (const feed of [run, runBytewise]) {
      const rewriter = new AuthorityRewriter();
      const { preface, frames } = parse(feed(rewriter, input));
      expect(preface).toEqual(PREFACE);
      expect(frames.map((f) => [f.type, f.flags, f.id])).toEqual([
        [FrameType.SETTINGS, 0, 0],
        [FrameType.HEADERS, Flag.END_HEADERS, 1],
        [FrameType.DATA, Flag.END_STREAM, 1],
        [FrameType.HEADERS, Flag.END_HEADERS, 3],
        [FrameType.DATA, Flag.END_STREAM, 3],
        [FrameType.HEADERS, Flag.END_HEADERS, 5],
        [FrameType.DATA, Flag.END_STREAM, 5],
        [FrameType.WINDOW_UPDATE, 0, 0],
      ]);
      expect(frames[2]?.payload.toString()).toBe('body of 1');
      expect(frames[7]?.payload.toString('hex')).toBe('00010000');
      // The server decodes every block with its own, fresh table, and gets the same headers.
      const server = new HpackDecoder({ maxTableSize: 4096, maxListSize: 65_536 });
      for (const f of frames.filter((x) => x.type === FrameType.HEADERS)) {
        const fields = server.decode(f.payload).map((h) => [h.name, h.value]);
        expect(fields).toEqual(goHeaders(PATH, 'localhost'));
      }
      expect(rewriter.rewritten).toBe(3);
    }
  });

  it('drops padding, keeps priority and END_STREAM, and joins CONTINUATIONs', () => {
    const block = new GoLikeEncoder().encode(goHeaders(PATH, SOCK));
    const priority = Buffer.from('8000000310', 'hex');
    const input = Buffer.concat([
      PREFACE,
      frame(
        FrameType.HEADERS,
        Flag.PADDED | Flag.PRIORITY | Flag.END_STREAM,
        7,
        Buffer.concat([Buffer.of(3), priority, block.subarray(0, 4), Buffer.alloc(3)]),
      ),
      frame(FrameType.CONTINUATION, 0, 7, block.subarray(4, 9)),
      frame(FrameType.CONTINUATION, Flag.END_HEADERS, 7, block.subarray(9)),
    ]);
    const { frames } = parse(run(new AuthorityRewriter(), input));
    expect(frames).toHaveLength(1);
    const [f] = frames;
    expect([f?.type, f?.flags, f?.id]).toEqual([
      FrameType.HEADERS,
      Flag.END_HEADERS | Flag.PRIORITY | Flag.END_STREAM,
      7,
    ]);
    expect(f?.payload.subarray(0, 5)).toEqual(priority);
    const server = new HpackDecoder({ maxTableSize: 4096, maxListSize: 65_536 });
    expect(server.decode(f?.payload.subarray(5) ?? Buffer.alloc(0)).map((h) => h.value)).toContain(
      'localhost',
    );
  });

  it('splits a block that outgrows 16 KiB into HEADERS and CONTINUATION frames', () => {
    const fields: [string, string][] = [...goHeaders(PATH, SOCK), ['x-big', 'z'.repeat(40_000)]];
    const input = Buffer.concat([
      PREFACE,
      frame(FrameType.HEADERS, Flag.END_HEADERS, 1, new GoLikeEncoder().encode(fields)),
    ]);
    const { frames } = parse(run(new AuthorityRewriter(), input));
    expect(frames.map((f) => [f.type, f.flags, f.payload.length <= 16_384])).toEqual([
      [FrameType.HEADERS, 0, true],
      [FrameType.CONTINUATION, 0, true],
      [FrameType.CONTINUATION, Flag.END_HEADERS, true],
    ]);
    const server = new HpackDecoder({ maxTableSize: 4096, maxListSize: 65_536 });
    const decoded = server.decode(Buffer.concat(frames.map((f) => f.payload)));
    expect(decoded.map((h) => [h.name, h.value])).toEqual([
      ...goHeaders(PATH, 'localhost'),
      ['x-big', 'z'.repeat(40_000)],
    ]);
  });

  it('passes anything that is not HTTP/2 through untouched', () => {
    const http1 = Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    expect(run(new AuthorityRewriter(), http1)).toEqual(http1);
  });

  it('refuses frames that break a header block, PUSH_PROMISE, and oversized blocks', () => {
    const cases: [Buffer, string][] = [
      [
        frame(FrameType.CONTINUATION, Flag.END_HEADERS, 1, Buffer.of(0x82)),
        'CONTINUATION frame out of sequence',
      ],
      [
        Buffer.concat([
          frame(FrameType.HEADERS, 0, 1, Buffer.of(0x82)),
          frame(FrameType.DATA, 0, 1, Buffer.of(1)),
        ]),
        "frame of type 0 inside stream 1's headers",
      ],
      [
        Buffer.concat([
          frame(FrameType.HEADERS, 0, 1, Buffer.of(0x82)),
          frame(FrameType.CONTINUATION, 0, 3, Buffer.of(1)),
        ]),
        'CONTINUATION for stream 3',
      ],
      [frame(0x5, Flag.END_HEADERS, 1, Buffer.alloc(4)), 'PUSH_PROMISE'],
      [frame(FrameType.HEADERS, Flag.PADDED | Flag.END_HEADERS, 1, Buffer.of(9, 0x82)), 'too much padding'],
      [frame(FrameType.HEADERS, Flag.END_HEADERS, 1, hpackInt(0, 7, 0x80)), 'table index 0'],
      [
        frame(FrameType.HEADERS, Flag.END_HEADERS, 1, Buffer.alloc(300 * 1024, 0x82)),
        'larger than 262144 octets',
      ],
    ];
    for (const [bytes, message] of cases) {
      expect(() => run(new AuthorityRewriter(), Buffer.concat([PREFACE, bytes]))).toThrow(message);
    }
  });
});

describe('fixAuthority', () => {
  const field = (name: string, value: string): HeaderField => ({ name, value, sensitive: false });

  it('tells authorities from paths', () => {
    for (const ok of [
      'localhost',
      'localhost:1234',
      '127.0.0.1:80',
      '[::1]:80',
      'user@host',
      '%2Frun%2Fsock',
    ]) {
      expect(isValidAuthority(ok), ok).toBe(true);
    }
    for (const bad of ['/run/berth/cri.sock', '', 'a b', 'host/path', 'x\ty']) {
      expect(isValidAuthority(bad), bad).toBe(false);
    }
  });

  it('rewrites a path authority or host, adds one a request lacks, and leaves trailers alone', () => {
    const withPath = [field(':method', 'POST'), field(':authority', SOCK), field('host', SOCK)];
    expect(fixAuthority(withPath)).toBe(true);
    expect(withPath.map((f) => f.value)).toEqual(['POST', 'localhost', 'localhost']);

    const without = [field(':method', 'POST'), field(':path', PATH)];
    expect(fixAuthority(without)).toBe(true);
    expect(without[0]).toEqual(field(':authority', 'localhost'));

    const fine = [field(':method', 'POST'), field(':authority', 'localhost')];
    expect(fixAuthority(fine)).toBe(false);

    const trailers = [field('grpc-status', '0')];
    expect(fixAuthority(trailers)).toBe(false);
    expect(trailers).toHaveLength(1);
  });
});
