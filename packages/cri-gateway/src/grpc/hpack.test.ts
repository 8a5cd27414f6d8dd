import { describe, expect, it } from 'vitest';
import { encodeHeaderBlock, type HeaderField, HpackDecoder } from './hpack.js';
import { huffmanDecode, huffmanEncode } from './hpack-huffman.js';

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const plain = (fields: HeaderField[]) => fields.map((f) => [f.name, f.value]);
const decoder = () => new HpackDecoder({ maxTableSize: 4096, maxListSize: 65_536 });

describe('HPACK Huffman code', () => {
  it('decodes and encodes the strings of RFC 7541 Appendix C.4', () => {
    for (const [text, code] of [
      ['www.example.com', 'f1e3 c2e5 f23a 6ba0 ab90 f4ff'],
      ['no-cache', 'a8eb 1064 9cbf'],
      ['custom-key', '25a8 49e9 5ba9 7d7f'],
      ['custom-value', '25a8 49e9 5bb8 e8b4 bf'],
    ] as const) {
      expect(huffmanDecode(hex(code)).toString('latin1')).toBe(text);
      expect(huffmanEncode(Buffer.from(text, 'latin1')).toString('hex')).toBe(code.replace(/\s/g, ''));
    }
  });

  it('round-trips every octet value', () => {
    const all = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    expect(huffmanDecode(huffmanEncode(all))).toEqual(all);
    expect(huffmanDecode(Buffer.alloc(0))).toEqual(Buffer.alloc(0));
  });

  it('refuses bad padding and the EOS symbol (RFC 7541 section 5.2)', () => {
    // 'a' is 00011: padding with zeros instead of ones.
    expect(() => huffmanDecode(Buffer.of(0b00011000))).toThrow('padding that is not a prefix of EOS');
    // A whole octet of ones after 'a'... is more than 7 bits of padding.
    expect(() => huffmanDecode(Buffer.of(0b00011111, 0xff))).toThrow('more than 7 bits of padding');
    // EOS itself (30 ones) inside the string.
    expect(() => huffmanDecode(Buffer.of(0xff, 0xff, 0xff, 0xff))).toThrow('contains the EOS symbol');
  });
});

describe('HpackDecoder', () => {
  it('decodes the requests of RFC 7541 Appendix C.3 (plain) and C.4 (Huffman) with one table', () => {
    for (const blocks of [
      [
        '8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d',
        '8286 84be 5808 6e6f 2d63 6163 6865',
        '8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65',
      ],
      [
        '8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff',
        '8286 84be 5886 a8eb 1064 9cbf',
        '8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf',
      ],
    ]) {
      const d = decoder();
      const [first, second, third] = blocks.map((b) => plain(d.decode(hex(b))));
      const base = [
        [':method', 'GET'],
        [':scheme', 'http'],
        [':path', '/'],
        [':authority', 'www.example.com'],
      ];
      expect(first).toEqual(base);
      expect(second).toEqual([...base, ['cache-control', 'no-cache']]);
      expect(third).toEqual([
        [':method', 'GET'],
        [':scheme', 'https'],
        [':path', '/index.html'],
        [':authority', 'www.example.com'],
        ['custom-key', 'custom-value'],
      ]);
    }
  });

  it('evicts the oldest entries when the table is full, as the encoder did', () => {
    const d = decoder();
    const big = 'x'.repeat(30); // 1 + 30 + 32 = 63 octets per entry: one fits in 100
    const literal = (name: string) =>
      Buffer.concat([Buffer.of(0x40, 1), Buffer.from(name), Buffer.of(30), Buffer.from(big)]);
    // Size update to 100 (5-bit prefix: 31 + 69), then two entries: the second evicts the first.
    const fields = d.decode(
      Buffer.concat([Buffer.of(0x3f, 69), literal('a'), literal('b'), Buffer.of(0x80 | 62)]),
    );
    expect(plain(fields)).toEqual([
      ['a', big],
      ['b', big],
      ['b', big],
    ]);
    expect(() => d.decode(Buffer.of(0x80 | 63))).toThrow('table index 63, which does not exist');
  });

  it('keeps the never-indexed flag and leaves literals without indexing out of the table', () => {
    const d = decoder();
    const block = Buffer.concat([Buffer.of(0x10, 1), Buffer.from('k'), Buffer.of(1), Buffer.from('v')]);
    expect(d.decode(block)).toEqual([{ name: 'k', value: 'v', sensitive: true }]);
    expect(() => d.decode(Buffer.of(0x80 | 62))).toThrow('does not exist');
  });

  it('refuses what RFC 7541 calls decoding errors, and blocks that expand too far', () => {
    expect(() => decoder().decode(Buffer.of(0x80))).toThrow('refers to table index 0');
    expect(() => decoder().decode(Buffer.of(0x3f, 0xe9, 0x26))).toThrow(
      'sets the table size to 5000, above 4096',
    );
    expect(() => decoder().decode(Buffer.of(0x82, 0x20))).toThrow('table size update after a field');
    expect(() => decoder().decode(Buffer.of(0x41, 0x05, 0x61))).toThrow('ends inside a string');
    expect(() => decoder().decode(Buffer.of(0xff))).toThrow('ends inside an integer');
    expect(() => decoder().decode(Buffer.of(0xff, 0x80, 0x80, 0x80, 0x80, 0x01))).toThrow('longer than 4');
    // 64 references to one 4 KiB-ish entry would decode to 256 KiB from 70 octets.
    const d = new HpackDecoder({ maxTableSize: 4096, maxListSize: 16_384 });
    const value = 'v'.repeat(4000);
    const entry = Buffer.concat([Buffer.of(0x40, 1, 0x6b), encodeLength(value.length), Buffer.from(value)]);
    expect(() => d.decode(Buffer.concat([entry, Buffer.alloc(64, 0x80 | 62)]))).toThrow(
      'expands beyond 16384 octets',
    );
  });
});

describe('encodeHeaderBlock', () => {
  it('round-trips fields without adding to the receiver table', () => {
    const fields: HeaderField[] = [
      { name: ':method', value: 'POST', sensitive: false },
      { name: ':authority', value: 'localhost', sensitive: false },
      { name: 'user-agent', value: 'grpc-go/1.51.0', sensitive: false },
      { name: 'x-long', value: 'y'.repeat(300), sensitive: false },
      { name: 'authorization', value: 'secret', sensitive: true },
      { name: ':scheme', value: 'http', sensitive: true },
    ];
    const d = decoder();
    expect(d.decode(encodeHeaderBlock(fields))).toEqual(fields);
    // Nothing was inserted: the first dynamic index is still empty.
    expect(() => d.decode(Buffer.of(0x80 | 62))).toThrow('does not exist');
    // An exact static match is one octet.
    expect(encodeHeaderBlock([fields[0] as HeaderField])).toEqual(Buffer.of(0x83));
  });

  it('encodes the examples of RFC 7541 Appendix C.2.2-C.2.4 octet for octet', () => {
    const f = (name: string, value: string, sensitive = false) => ({ name, value, sensitive });
    // C.2.2 literal without indexing (indexed name), C.2.3 never indexed (new name), C.2.4 indexed.
    expect(encodeHeaderBlock([f(':path', '/sample/path')])).toEqual(
      hex('040c 2f73 616d 706c 652f 7061 7468'),
    );
    expect(encodeHeaderBlock([f('password', 'secret', true)])).toEqual(
      hex('1008 7061 7373 776f 7264 0673 6563 7265 74'),
    );
    expect(encodeHeaderBlock([f(':method', 'GET')])).toEqual(hex('82'));
    // The constant response headers of berth's gRPC server, decoded back.
    const response = [
      f(':status', '200'),
      f('content-type', 'application/grpc+proto'),
      f('grpc-status', '0'),
    ];
    expect(decoder().decode(encodeHeaderBlock(response))).toEqual(response);
  });
});

/** An HPACK string length with the 7-bit prefix, raw (not Huffman). */
function encodeLength(n: number): Buffer {
  const out = [0x7f];
  let rest = n - 127;
  for (; rest >= 0x80; rest >>>= 7) out.push((rest & 0x7f) | 0x80);
  out.push(rest);
  return Buffer.from(out);
}
