import { BerthError, Code } from '@berth/api';
import { huffmanDecode } from './hpack-huffman.js';

/**
 * One decoded header field. Names and values are latin1 strings, so every octet survives a round
 * trip; `sensitive` marks a field its sender asked never to be indexed (RFC 7541 section 7.1.3).
 */
export interface HeaderField {
  name: string;
  value: string;
  sensitive: boolean;
}

/** The static table of RFC 7541 Appendix A: entry i+1 is STATIC[i]; empty values have no value. */
const STATIC: readonly (readonly [string, string])[] = [
  [':authority', ''],
  [':method', 'GET'],
  [':method', 'POST'],
  [':path', '/'],
  [':path', '/index.html'],
  [':scheme', 'http'],
  [':scheme', 'https'],
  ...['200', '204', '206', '304', '400', '404', '500'].map((s) => [':status', s] as const),
  ['accept-charset', ''],
  ['accept-encoding', 'gzip, deflate'],
  ...[
    'accept-language',
    'accept-ranges',
    'accept',
    'access-control-allow-origin',
    'age',
    'allow',
    'authorization',
    'cache-control',
    'content-disposition',
    'content-encoding',
    'content-language',
    'content-length',
    'content-location',
    'content-range',
    'content-type',
    'cookie',
    'date',
    'etag',
    'expect',
    'expires',
    'from',
    'host',
    'if-match',
    'if-modified-since',
    'if-none-match',
    'if-range',
    'if-unmodified-since',
    'last-modified',
    'link',
    'location',
    'max-forwards',
    'proxy-authenticate',
    'proxy-authorization',
    'range',
    'referer',
    'refresh',
    'retry-after',
    'server',
    'set-cookie',
    'strict-transport-security',
    'transfer-encoding',
    'user-agent',
    'vary',
    'via',
    'www-authenticate',
  ].map((name) => [name, ''] as const),
];

/** Each entry costs its octets plus 32 (RFC 7541 section 4.1). */
const ENTRY_OVERHEAD = 32;

const staticByName = new Map<string, number>();
const staticByField = new Map<string, Map<string, number>>();
STATIC.forEach(([name, value], i) => {
  if (!staticByName.has(name)) staticByName.set(name, i + 1);
  const values = staticByField.get(name) ?? new Map<string, number>();
  values.set(value, i + 1);
  staticByField.set(name, values);
});

function compression(what: string): BerthError {
  return new BerthError(Code.INVALID_ARGUMENT, `HPACK header block ${what}`);
}

/**
 * Decodes the header blocks one HTTP/2 peer sends on one connection, keeping the dynamic table
 * those blocks build (RFC 7541). Blocks must be fed in the order they arrived. `maxTableSize` is
 * the most the peer may grow the table to; `maxListSize` bounds what one block may expand to, so
 * a few octets of indexed references cannot balloon into megabytes.
 */
export class HpackDecoder {
  private readonly entries: [string, string][] = [];
  private size = 0;
  private limit: number;

  constructor(private readonly opts: { maxTableSize: number; maxListSize: number }) {
    this.limit = opts.maxTableSize;
  }

  /** Decodes one complete header block (HEADERS plus its CONTINUATIONs, padding removed). */
  decode(block: Buffer): HeaderField[] {
    const r = { buf: block, pos: 0 };
    const fields: HeaderField[] = [];
    let listSize = 0;
    while (r.pos < block.length) {
      const first = block[r.pos] ?? 0;
      let field: HeaderField;
      if (first & 0x80) {
        const [name, value] = this.lookup(readInt(r, 7));
        field = { name, value, sensitive: false };
      } else if (first & 0x40) {
        field = this.literal(r, 6, false);
        this.insert(field.name, field.value);
      } else if (first & 0x20) {
        // A size update is only allowed before the block's first field.
        if (fields.length > 0) throw compression('has a table size update after a field');
        const size = readInt(r, 5);
        if (size > this.opts.maxTableSize) {
          throw compression(`sets the table size to ${size}, above ${this.opts.maxTableSize}`);
        }
        this.limit = size;
        this.evict(0);
        continue;
      } else {
        field = this.literal(r, 4, (first & 0x10) !== 0);
      }
      listSize += field.name.length + field.value.length + ENTRY_OVERHEAD;
      if (listSize > this.opts.maxListSize) {
        throw compression(`expands beyond ${this.opts.maxListSize} octets`);
      }
      fields.push(field);
    }
    return fields;
  }

  private literal(r: Reader, prefix: number, sensitive: boolean): HeaderField {
    const index = readInt(r, prefix);
    const name = index === 0 ? readString(r) : this.lookup(index)[0];
    return { name, value: readString(r), sensitive };
  }

  private lookup(index: number): readonly [string, string] {
    if (index === 0) throw compression('refers to table index 0');
    const entry =
      index <= STATIC.length
        ? STATIC[index - 1]
        : this.entries[this.entries.length - 1 - (index - STATIC.length - 1)];
    if (!entry) throw compression(`refers to table index ${index}, which does not exist`);
    return entry;
  }

  private insert(name: string, value: string): void {
    const cost = name.length + value.length + ENTRY_OVERHEAD;
    this.evict(cost);
    // An entry larger than the whole table empties it and is not added (RFC 7541 section 4.4).
    if (cost > this.limit) return;
    this.entries.push([name, value]);
    this.size += cost;
  }

  private evict(room: number): void {
    while (this.size + room > this.limit && this.entries.length > 0) {
      const [name, value] = this.entries.shift() ?? ['', ''];
      this.size -= name.length + value.length + ENTRY_OVERHEAD;
    }
  }
}

/**
 * Encodes header fields without touching the receiver's dynamic table: a static-table match is
 * indexed, everything else is a plain literal "without indexing" (or "never indexed" for a
 * sensitive field). The receiver's table thus stays empty, whatever the decoder saw.
 */
export function encodeHeaderBlock(fields: readonly HeaderField[]): Buffer {
  // Worst case per field: a 1-octet flag, two 6-octet integers, and the octets themselves.
  let bound = 0;
  for (const f of fields) bound += 13 + f.name.length + f.value.length;
  const out = Buffer.allocUnsafe(bound);
  let pos = 0;
  for (const f of fields) {
    const exact = f.sensitive ? undefined : staticByField.get(f.name)?.get(f.value);
    if (exact !== undefined) {
      pos = writeInt(out, pos, exact, 7, 0x80);
      continue;
    }
    const flag = f.sensitive ? 0x10 : 0x00;
    const nameIndex = staticByName.get(f.name);
    if (nameIndex !== undefined) pos = writeInt(out, pos, nameIndex, 4, flag);
    else {
      out[pos++] = flag;
      pos = writeString(out, pos, f.name);
    }
    pos = writeString(out, pos, f.value);
  }
  return out.subarray(0, pos);
}

interface Reader {
  buf: Buffer;
  pos: number;
}

/** Reads an integer with an N-bit prefix (RFC 7541 section 5.1), refusing ones past 2^28. */
function readInt(r: Reader, prefix: number): number {
  const max = (1 << prefix) - 1;
  let value = (r.buf[r.pos++] ?? 0) & max;
  if (value < max) return value;
  for (let shift = 0; shift <= 21; shift += 7) {
    if (r.pos >= r.buf.length) throw compression('ends inside an integer');
    const b = r.buf[r.pos++] ?? 0;
    value += (b & 0x7f) * 2 ** shift;
    if ((b & 0x80) === 0) return value;
  }
  throw compression('has an integer longer than 4 continuation octets');
}

function readString(r: Reader): string {
  if (r.pos >= r.buf.length) throw compression('ends before a string');
  const huffman = ((r.buf[r.pos] ?? 0) & 0x80) !== 0;
  const length = readInt(r, 7);
  const end = r.pos + length;
  if (end > r.buf.length) throw compression('ends inside a string');
  const start = r.pos;
  r.pos = end;
  return huffman
    ? huffmanDecode(r.buf.subarray(start, end)).toString('latin1')
    : r.buf.toString('latin1', start, end);
}

function writeInt(out: Buffer, at: number, value: number, prefix: number, flags: number): number {
  let pos = at;
  const max = (1 << prefix) - 1;
  if (value < max) {
    out[pos++] = flags | value;
    return pos;
  }
  out[pos++] = flags | max;
  let rest = value - max;
  while (rest >= 0x80) {
    out[pos++] = (rest & 0x7f) | 0x80;
    rest = Math.floor(rest / 0x80);
  }
  out[pos++] = rest;
  return pos;
}

function writeString(out: Buffer, at: number, s: string): number {
  const pos = writeInt(out, at, s.length, 7, 0x00);
  return pos + out.write(s, pos, 'latin1');
}
