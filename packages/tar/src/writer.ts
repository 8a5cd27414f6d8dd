import { BerthError, Code } from '@berth/api';
import type { EntryType } from './entry.js';
import { BLOCK } from './fields.js';

/** Data of an entry: bytes, or a size and a generator of chunks that add up to it (big files). */
export type TarWriteData = Buffer | { size: number; chunks: () => Iterable<Buffer> };

/** One entry to write. Names and link targets are raw bytes as latin1 strings, as the reader gives them. */
export interface TarWriteEntry {
  name: string;
  type: EntryType;
  /** Permission bits plus setuid/setgid/sticky; 0644 when absent. */
  mode?: number;
  uid?: number;
  gid?: number;
  /** Seconds since the epoch; fractional or negative values are written as a PAX mtime. */
  mtime?: number;
  linkname?: string;
  devmajor?: number;
  devminor?: number;
  data?: TarWriteData;
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

/** Writes a numeric field as octal, or GNU base-256 when it does not fit (sizes of 8 GiB and more). */
function numeric(buf: Buffer, off: number, len: number, v: number): void {
  if (!Number.isSafeInteger(v) || v < 0) {
    throw new BerthError(Code.INVALID_ARGUMENT, `tar header field at offset ${off} cannot hold ${v}`);
  }
  const s = v.toString(8);
  if (s.length <= len - 1) {
    buf.write(`${s.padStart(len - 1, '0')}\0`, off, len, 'latin1');
    return;
  }
  buf[off] = 0x80;
  let rest = v;
  for (let i = len - 1; i > 0; i--) {
    buf[off + i] = rest % 256;
    rest = Math.floor(rest / 256);
  }
}

interface HeaderFields {
  mode?: number;
  uid?: number;
  gid?: number;
  mtime?: number;
  devmajor?: number;
  devminor?: number;
}

function header(name: string, flag: string, e: HeaderFields, size: number, link: string): Buffer {
  const h = Buffer.alloc(BLOCK);
  h.write(name, 0, 100, 'latin1');
  numeric(h, 100, 8, (e.mode ?? 0o644) & 0o7777);
  numeric(h, 108, 8, e.uid ?? 0);
  numeric(h, 116, 8, e.gid ?? 0);
  numeric(h, 124, 12, size);
  numeric(h, 136, 12, Math.max(0, Math.floor(e.mtime ?? 0)));
  h.write(flag, 156, 1, 'latin1');
  h.write(link, 157, 100, 'latin1');
  h.write('ustar\0', 257, 6, 'latin1');
  h.write('00', 263, 2, 'latin1');
  numeric(h, 329, 8, e.devmajor ?? 0);
  numeric(h, 337, 8, e.devminor ?? 0);
  h.fill(0x20, 148, 156);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 8, 'latin1');
  return h;
}

/** Zero bytes that complete a data section of `size` bytes to a whole block. */
export function tarPadding(size: number): Buffer {
  return Buffer.alloc((BLOCK - (size % BLOCK)) % BLOCK);
}

/** The two zero blocks that end an archive. */
export const TAR_END: Buffer = Buffer.alloc(BLOCK * 2);

function paxRecord(key: string, value: Buffer): Buffer {
  const body = Buffer.concat([Buffer.from(` ${key}=`, 'latin1'), value, Buffer.from('\n')]);
  let len = body.length + 1;
  while (String(len).length + body.length !== len) len++;
  return Buffer.concat([Buffer.from(String(len)), body]);
}

/** A metadata record ('x' PAX or 'L'/'K' GNU long name) with its header, padded to blocks. */
function metaRecord(name: string, flag: string, body: Buffer): Buffer {
  return Buffer.concat([header(name, flag, {}, body.length, ''), body, tarPadding(body.length)]);
}

/**
 * The header blocks of one entry whose `size` data bytes the caller writes next (then
 * tarPadding(size)): GNU long-name records on request, a PAX record for long names, sub-second or
 * negative times, xattrs and extra records, then the ustar header.
 */
export function tarHeader(e: Omit<TarWriteEntry, 'data'>, size: number): Buffer {
  const parts: Buffer[] = [];
  const link = e.linkname ?? '';
  let name = e.name;
  let linkField = link;
  if (e.gnuLongNames && Buffer.byteLength(name, 'latin1') > 99) {
    parts.push(metaRecord('././@LongLink', 'L', Buffer.from(`${name}\0`, 'latin1')));
    name = name.slice(0, 99);
  }
  if (e.gnuLongNames && Buffer.byteLength(link, 'latin1') > 99) {
    parts.push(metaRecord('././@LongLink', 'K', Buffer.from(`${link}\0`, 'latin1')));
    linkField = link.slice(0, 99);
  }
  const records: Buffer[] = [];
  if (Buffer.byteLength(name, 'latin1') > 99) {
    records.push(paxRecord('path', Buffer.from(name, 'latin1')));
    name = name.slice(0, 99);
  }
  if (Buffer.byteLength(linkField, 'latin1') > 99) {
    records.push(paxRecord('linkpath', Buffer.from(linkField, 'latin1')));
    linkField = linkField.slice(0, 99);
  }
  if (e.mtime !== undefined && (!Number.isInteger(e.mtime) || e.mtime < 0)) {
    records.push(paxRecord('mtime', Buffer.from(e.mtime.toFixed(9))));
  }
  for (const [k, v] of Object.entries(e.xattrs ?? {})) {
    records.push(paxRecord(`SCHILY.xattr.${k}`, Buffer.isBuffer(v) ? v : Buffer.from(v)));
  }
  for (const [k, v] of Object.entries(e.pax ?? {})) records.push(paxRecord(k, Buffer.from(v, 'latin1')));
  if (records.length > 0)
    parts.push(metaRecord(`PaxHeaders/${name.slice(0, 80)}`, 'x', Buffer.concat(records)));
  parts.push(header(name, typeFlag[e.type], e, size, linkField));
  return parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts);
}

/**
 * Writes a whole tar stream (ustar, with PAX records for long names, sub-second times and xattrs,
 * or GNU long names on request) as a sequence of chunks, ending with the end-of-archive marker
 * unless `endMarker` is false.
 */
export function* tarChunks(
  entries: Iterable<TarWriteEntry>,
  opts: { endMarker?: boolean } = {},
): Generator<Buffer> {
  for (const e of entries) {
    const data = e.data;
    const size = data === undefined ? 0 : Buffer.isBuffer(data) ? data.length : data.size;
    yield tarHeader(e, size);
    if (data !== undefined) {
      if (Buffer.isBuffer(data)) yield data;
      else for (const c of data.chunks()) yield c;
      yield tarPadding(size);
    }
  }
  if (opts.endMarker !== false) yield TAR_END;
}

/** The whole tar stream of `entries` as one Buffer (small archives: fixtures, metadata). */
export function tarBuffer(entries: Iterable<TarWriteEntry>, opts: { endMarker?: boolean } = {}): Buffer {
  return Buffer.concat([...tarChunks(entries, opts)]);
}
