import { BerthError, Code } from '@berth/api';

/** One tar entry's header fields berth reads or writes. */
export interface TarHeader {
  name: string;
  size: number;
  /** '0' file, '5' directory, '2' symlink, '1' hardlink, others passed through. */
  type: string;
  mode: number;
  linkname?: string;
  mtime?: number;
  uid?: number;
  gid?: number;
}

const BLOCK = 512;

function writeOctal(buf: Buffer, off: number, len: number, value: number): void {
  const s = value.toString(8).padStart(len - 1, '0');
  if (s.length > len - 1) {
    // Too large for octal: GNU base-256 (sizes over 8 GiB).
    buf[off] = 0x80;
    let v = BigInt(value);
    for (let i = len - 1; i > 0; i--) {
      buf[off + i] = Number(v & 0xffn);
      v >>= 8n;
    }
    return;
  }
  buf.write(s, off, len - 1, 'ascii');
  buf[off + len - 1] = 0;
}

/**
 * A ustar header block. Names longer than 100 bytes are split into prefix/name at a slash; longer
 * still get a PAX `path` record first, so any name round-trips.
 */
export function tarHeader(h: TarHeader): Buffer {
  const blocks: Buffer[] = [];
  let name = h.name;
  let prefix = '';
  if (Buffer.byteLength(name) > 100) {
    const cut = name.lastIndexOf('/', 155);
    if (
      cut > 0 &&
      Buffer.byteLength(name.slice(cut + 1)) <= 100 &&
      Buffer.byteLength(name.slice(0, cut)) <= 155
    ) {
      prefix = name.slice(0, cut);
      name = name.slice(cut + 1);
    } else {
      const rec = paxRecord('path', h.name);
      blocks.push(rawHeader({ name: 'PaxHeader', size: rec.length, type: 'x', mode: 0o644 }, ''), pad(rec));
      name = name.slice(0, 100);
    }
  }
  blocks.push(rawHeader({ ...h, name }, prefix));
  return Buffer.concat(blocks);
}

function paxRecord(key: string, value: string): Buffer {
  const body = ` ${key}=${value}\n`;
  let len = Buffer.byteLength(body);
  len += String(len).length;
  if (String(len).length !== String(len - String(len).length).length) len++;
  return Buffer.from(`${len}${body}`);
}

function rawHeader(h: TarHeader, prefix: string): Buffer {
  const b = Buffer.alloc(BLOCK);
  b.write(h.name, 0, 100, 'utf8');
  writeOctal(b, 100, 8, h.mode & 0o7777);
  writeOctal(b, 108, 8, h.uid ?? 0);
  writeOctal(b, 116, 8, h.gid ?? 0);
  writeOctal(b, 124, 12, h.size);
  writeOctal(b, 136, 12, h.mtime ?? 0);
  b.write('        ', 148, 8, 'ascii');
  b.write(h.type, 156, 1, 'ascii');
  if (h.linkname) b.write(h.linkname, 157, 100, 'utf8');
  b.write('ustar\u000000', 257, 8, 'ascii');
  if (prefix) b.write(prefix, 345, 155, 'utf8');
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += b[i] as number;
  writeOctal(b, 148, 7, sum);
  b[155] = 0x20;
  return b;
}

/** Zero padding that completes a data section of `n` bytes to a block boundary. */
export function padding(n: number): Buffer {
  const r = n % BLOCK;
  return r === 0 ? Buffer.alloc(0) : Buffer.alloc(BLOCK - r);
}

function pad(b: Buffer): Buffer {
  return Buffer.concat([b, padding(b.length)]);
}

/** The two zero blocks that end an archive. */
export const TAR_END = Buffer.alloc(BLOCK * 2);

/** Builds a whole archive in memory (small archives: fixtures, metadata). */
export function tarBuffer(entries: (Omit<TarHeader, 'size'> & { body?: Buffer })[]): Buffer {
  const parts: Buffer[] = [];
  for (const e of entries) {
    const body = e.body ?? Buffer.alloc(0);
    parts.push(tarHeader({ ...e, size: body.length }), body, padding(body.length));
  }
  parts.push(TAR_END);
  return Buffer.concat(parts);
}

function parseOctal(b: Buffer, off: number, len: number): number {
  if ((b[off] as number) & 0x80) {
    let v = 0n;
    for (let i = off + 1; i < off + len; i++) v = (v << 8n) | BigInt(b[i] as number);
    return Number(v);
  }
  const s = b
    .toString('ascii', off, off + len)
    .replace(/\0.*$/s, '')
    .trim();
  return s ? Number.parseInt(s, 8) : 0;
}

function cstr(b: Buffer, off: number, len: number): string {
  const end = b.indexOf(0, off);
  return b.toString('utf8', off, end >= 0 && end < off + len ? end : off + len);
}

/** Pulls exact byte counts out of a chunked stream. */
class ByteReader {
  private buf = Buffer.alloc(0);
  private readonly it: AsyncIterator<Uint8Array>;
  private done = false;

  constructor(src: AsyncIterable<Uint8Array>) {
    this.it = src[Symbol.asyncIterator]();
  }

  private async fill(n: number): Promise<boolean> {
    while (this.buf.length < n && !this.done) {
      const r = await this.it.next();
      if (r.done) this.done = true;
      else this.buf = this.buf.length ? Buffer.concat([this.buf, r.value]) : Buffer.from(r.value);
    }
    return this.buf.length >= n;
  }

  async read(n: number): Promise<Buffer | undefined> {
    if (!(await this.fill(n))) return undefined;
    const out = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(n);
    return out;
  }

  /** Yields exactly n bytes in chunks as they arrive. */
  async *chunks(n: number): AsyncGenerator<Buffer> {
    let left = n;
    while (left > 0) {
      if (this.buf.length === 0 && !(await this.fill(1))) throw truncated();
      const take = Math.min(left, this.buf.length);
      const out = this.buf.subarray(0, take);
      this.buf = this.buf.subarray(take);
      left -= take;
      yield out;
    }
  }
}

function truncated(): BerthError {
  return new BerthError(Code.INVALID_ARGUMENT, 'tar archive is truncated');
}

/** One entry of an archive being read: consume `body` before asking for the next entry. */
export interface TarEntry {
  header: TarHeader;
  body: AsyncIterable<Buffer>;
}

/**
 * Reads a tar stream entry by entry (ustar, PAX path/size and GNU long names), without buffering
 * entry data: each entry's body streams, and unread bodies are skipped.
 */
export async function* readTar(src: AsyncIterable<Uint8Array>): AsyncGenerator<TarEntry> {
  const r = new ByteReader(src);
  let paxPath: string | undefined;
  let paxSize: number | undefined;
  let longName: string | undefined;
  for (;;) {
    const block = await r.read(BLOCK);
    if (!block) return;
    if (block.every((x) => x === 0)) return;
    let sum = 0;
    for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : (block[i] as number);
    if (sum !== parseOctal(block, 148, 8))
      throw new BerthError(Code.INVALID_ARGUMENT, 'tar archive has a corrupt header');
    const type = String.fromCharCode(block[156] || 0x30);
    let size = parseOctal(block, 124, 12);
    // Only POSIX ustar ("ustar\0") has a name prefix; old GNU ("ustar  ") keeps times there.
    const prefix = block.toString('latin1', 257, 263) === 'ustar\u0000' ? cstr(block, 345, 155) : '';
    let name = prefix ? `${prefix}/${cstr(block, 0, 100)}` : cstr(block, 0, 100);
    if (type === 'x' || type === 'g' || type === 'L') {
      const data: Buffer[] = [];
      for await (const c of r.chunks(size)) data.push(Buffer.from(c));
      await r.read(padding(size).length);
      const text = Buffer.concat(data).toString('utf8');
      if (type === 'L') longName = text.replace(/\0+$/, '');
      else if (type === 'x') {
        for (const rec of parsePax(text)) {
          if (rec[0] === 'path') paxPath = rec[1];
          if (rec[0] === 'size') paxSize = Number(rec[1]);
        }
      }
      continue;
    }
    if (longName !== undefined) name = longName;
    if (paxPath !== undefined) name = paxPath;
    if (paxSize !== undefined) size = paxSize;
    longName = paxPath = paxSize = undefined;
    const header: TarHeader = {
      name,
      size,
      type,
      mode: parseOctal(block, 100, 8),
      linkname: cstr(block, 157, 100),
      mtime: parseOctal(block, 136, 12),
    };
    let consumed = false;
    const body = (async function* () {
      consumed = true;
      yield* r.chunks(size);
    })();
    yield { header, body };
    if (!consumed) for await (const _ of r.chunks(size)) void _;
    else for await (const _ of body) void _;
    if (!(await r.read(padding(size).length)) && size % BLOCK !== 0) throw truncated();
  }
}

function parsePax(text: string): [string, string][] {
  const out: [string, string][] = [];
  let i = 0;
  while (i < text.length) {
    const sp = text.indexOf(' ', i);
    if (sp < 0) break;
    const len = Number(text.slice(i, sp));
    if (!len) break;
    const rec = Buffer.from(text.slice(i)).subarray(0, len).toString('utf8');
    const kv = rec.slice(rec.indexOf(' ') + 1, -1);
    const eq = kv.indexOf('=');
    out.push([kv.slice(0, eq), kv.slice(eq + 1)]);
    i += Buffer.from(rec).length === len ? rec.length : len;
  }
  return out;
}
