import type { EntryType } from './parser.js';

/** One entry to write; data may be bytes or a size filled by a generator (for big test files). */
export interface TarWriteEntry {
  name: string;
  type: EntryType;
  mode?: number;
  uid?: number;
  gid?: number;
  /** Seconds since the epoch; fractional values are written as a PAX mtime. */
  mtime?: number;
  linkname?: string;
  devmajor?: number;
  devminor?: number;
  data?: Buffer | { size: number; chunks: () => Iterable<Buffer> };
  xattrs?: Record<string, Buffer | string>;
  /** Extra PAX records (raw), e.g. to write hostile archives in tests. */
  pax?: Record<string, string>;
  /** Use a GNU 'L'/'K' long-name record instead of PAX for a long name/link. */
  gnuLongNames?: boolean;
}

const typeFlag: Record<EntryType, string> = {
  file: '0',
  hardlink: '1',
  symlink: '2',
  char: '3',
  block: '4',
  dir: '5',
  fifo: '6',
};

function octal(buf: Buffer, off: number, len: number, v: number): void {
  buf.write(`${v.toString(8).padStart(len - 1, '0')}\0`, off, len, 'latin1');
}

function header(name: string, flag: string, e: Partial<TarWriteEntry>, size: number, link: string): Buffer {
  const h = Buffer.alloc(512);
  h.write(name, 0, 100, 'latin1');
  octal(h, 100, 8, e.mode ?? 0o644);
  octal(h, 108, 8, e.uid ?? 0);
  octal(h, 116, 8, e.gid ?? 0);
  octal(h, 124, 12, size);
  octal(h, 136, 12, Math.floor(e.mtime ?? 0));
  h.write(flag, 156, 1, 'latin1');
  h.write(link, 157, 100, 'latin1');
  h.write('ustar\0', 257, 6, 'latin1');
  h.write('00', 263, 2, 'latin1');
  octal(h, 329, 8, e.devmajor ?? 0);
  octal(h, 337, 8, e.devminor ?? 0);
  h.fill(0x20, 148, 156);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 8, 'latin1');
  return h;
}

function pad(size: number): Buffer {
  return Buffer.alloc((512 - (size % 512)) % 512);
}

function paxRecord(key: string, value: Buffer): Buffer {
  const body = Buffer.concat([Buffer.from(` ${key}=`, 'latin1'), value, Buffer.from('\n')]);
  let len = body.length + 1;
  while (String(len).length + body.length !== len) len++;
  return Buffer.concat([Buffer.from(String(len)), body]);
}

/**
 * Writes a tar stream (ustar, with PAX records for long names, sub-second times and xattrs, or
 * GNU long names on request) as a sequence of chunks. Used to build fixture layers in tests and
 * the benchmark image; never used on the unpack path.
 */
export function* tarChunks(
  entries: Iterable<TarWriteEntry>,
  opts: { endMarker?: boolean } = {},
): Generator<Buffer> {
  for (const e of entries) {
    const data = e.data;
    const size = data === undefined ? 0 : Buffer.isBuffer(data) ? data.length : data.size;
    const link = e.linkname ?? '';
    const records: Buffer[] = [];
    let name = e.name;
    let linkField = link;
    if (e.gnuLongNames && Buffer.byteLength(name, 'latin1') > 99) {
      const n = Buffer.from(`${name}\0`, 'latin1');
      yield header('././@LongLink', 'L', {}, n.length, '');
      yield n;
      yield pad(n.length);
      name = name.slice(0, 99);
    }
    if (e.gnuLongNames && Buffer.byteLength(link, 'latin1') > 99) {
      const n = Buffer.from(`${link}\0`, 'latin1');
      yield header('././@LongLink', 'K', {}, n.length, '');
      yield n;
      yield pad(n.length);
      linkField = link.slice(0, 99);
    }
    if (Buffer.byteLength(name, 'latin1') > 99) {
      records.push(paxRecord('path', Buffer.from(name, 'latin1')));
      name = name.slice(0, 99);
    }
    if (Buffer.byteLength(linkField, 'latin1') > 99) {
      records.push(paxRecord('linkpath', Buffer.from(linkField, 'latin1')));
      linkField = linkField.slice(0, 99);
    }
    if (e.mtime !== undefined && !Number.isInteger(e.mtime)) {
      records.push(paxRecord('mtime', Buffer.from(e.mtime.toFixed(9))));
    }
    for (const [k, v] of Object.entries(e.xattrs ?? {})) {
      records.push(paxRecord(`SCHILY.xattr.${k}`, Buffer.isBuffer(v) ? v : Buffer.from(v)));
    }
    for (const [k, v] of Object.entries(e.pax ?? {})) records.push(paxRecord(k, Buffer.from(v, 'latin1')));
    if (records.length > 0) {
      const body = Buffer.concat(records);
      yield header(`PaxHeaders/${name.slice(0, 80)}`, 'x', {}, body.length, '');
      yield body;
      yield pad(body.length);
    }
    yield header(name, typeFlag[e.type], e, size, linkField);
    if (data !== undefined) {
      if (Buffer.isBuffer(data)) yield data;
      else for (const c of data.chunks()) yield c;
      yield pad(size);
    }
  }
  if (opts.endMarker !== false) yield Buffer.alloc(1024);
}

/** The whole tar stream of `entries` as one Buffer (small fixtures only). */
export function tarBuffer(entries: Iterable<TarWriteEntry>, opts: { endMarker?: boolean } = {}): Buffer {
  return Buffer.concat([...tarChunks(entries, opts)]);
}
