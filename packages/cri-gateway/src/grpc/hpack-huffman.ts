import { BerthError, Code } from '@berth/api';

// HPACK's Huffman code (RFC 7541 Appendix B) is canonical: codes are handed out in order of bit
// length, then of symbol. So the code lengths alone define it, and the decoder below needs only
// per-length tables rebuilt from them, not the 257 codes spelled out.

/** Bit length of the code of each octet 0..255 (RFC 7541 Appendix B); EOS (256) has 30 bits. */
// biome-ignore format: one row per 16 symbols keeps the table checkable against the RFC.
const CODE_LENGTHS: readonly number[] = [
  13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, // 0x00
  28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28, // 0x10
  6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, //         0x20 ' '..'/'
  5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10, //             0x30 '0'..'?'
  13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, //               0x40 '@'..'O'
  7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6, //            0x50 'P'..'_'
  15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5, //               0x60 '`'..'o'
  6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28, //           0x70 'p'..DEL
  20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23, // 0x80
  24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, // 0x90
  22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, // 0xa0
  21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23, // 0xb0
  26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, // 0xc0
  19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27, // 0xd0
  20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23, // 0xe0
  26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26, // 0xf0
];

const EOS = 256;
const MAX_BITS = 30;

/** Per bit length: the first code of that length, how many codes have it, where they start. */
interface Canonical {
  first: Int32Array;
  count: Int32Array;
  offset: Int32Array;
  symbols: Uint16Array;
}

function buildCanonical(): Canonical {
  const lengths = [...CODE_LENGTHS, MAX_BITS];
  const symbols = Uint16Array.from(
    lengths.map((_, s) => s).sort((a, b) => (lengths[a] ?? 0) - (lengths[b] ?? 0) || a - b),
  );
  const first = new Int32Array(MAX_BITS + 1);
  const count = new Int32Array(MAX_BITS + 1);
  const offset = new Int32Array(MAX_BITS + 1);
  for (const len of lengths) count[len] = (count[len] ?? 0) + 1;
  let code = 0;
  let index = 0;
  for (let len = 1; len <= MAX_BITS; len++) {
    first[len] = code;
    offset[len] = index;
    const n = count[len] ?? 0;
    code = (code + n) << 1;
    index += n;
  }
  return { first, count, offset, symbols };
}

const table = buildCanonical();

function corrupt(what: string): BerthError {
  return new BerthError(Code.INVALID_ARGUMENT, `HPACK Huffman string ${what}`);
}

/**
 * Decodes an HPACK Huffman-coded string to its octets. Rejects what RFC 7541 section 5.2 calls a
 * decoding error: the EOS symbol inside the string, or padding longer than 7 bits or not all ones.
 */
export function huffmanDecode(input: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(Math.ceil((input.length * 8) / 5));
  let n = 0;
  let code = 0;
  let len = 0;
  // Whether every bit of the current partial code is 1: only such a prefix of EOS may pad the end.
  let allOnes = true;
  for (const byte of input) {
    for (let bit = 7; bit >= 0; bit--) {
      const b = (byte >> bit) & 1;
      code = (code << 1) | b;
      allOnes &&= b === 1;
      len++;
      const i = code - (table.first[len] ?? 0);
      if (i >= 0 && i < (table.count[len] ?? 0)) {
        const symbol = table.symbols[(table.offset[len] ?? 0) + i] ?? EOS;
        if (symbol === EOS) throw corrupt('contains the EOS symbol');
        out[n++] = symbol;
        code = 0;
        len = 0;
        allOnes = true;
      } else if (len >= MAX_BITS) {
        throw corrupt('has a code no symbol has');
      }
    }
  }
  if (len > 7) throw corrupt('ends with more than 7 bits of padding');
  if (!allOnes) throw corrupt('ends with padding that is not a prefix of EOS');
  return out.subarray(0, n);
}

/**
 * Encodes octets with HPACK's Huffman code, padding the last octet with ones. berth's own header
 * blocks are sent as plain literals; this is how tests build blocks the way Go clients do.
 */
export function huffmanEncode(input: Uint8Array): Buffer {
  const codes = canonicalCodes();
  const bits = input.reduce((sum, byte) => sum + (CODE_LENGTHS[byte] ?? 0), 0);
  const out = Buffer.alloc(Math.ceil(bits / 8), 0xff);
  let pos = 0;
  for (const byte of input) {
    const code = codes[byte] ?? 0;
    for (let bit = (CODE_LENGTHS[byte] ?? 0) - 1; bit >= 0; bit--, pos++) {
      const mask = 0x80 >> (pos & 7);
      const index = pos >> 3;
      out[index] = ((code >>> bit) & 1) === 1 ? (out[index] ?? 0) | mask : (out[index] ?? 0) & ~mask;
    }
  }
  return out;
}

let codesCache: Uint32Array | undefined;

function canonicalCodes(): Uint32Array {
  if (codesCache) return codesCache;
  const codes = new Uint32Array(EOS + 1);
  for (let len = 1; len <= MAX_BITS; len++) {
    for (let i = 0; i < (table.count[len] ?? 0); i++) {
      codes[table.symbols[(table.offset[len] ?? 0) + i] ?? EOS] = (table.first[len] ?? 0) + i;
    }
  }
  codesCache = codes;
  return codes;
}
