import { BerthError, Code } from '@berth/api';
import type { Timespec } from './entry.js';

/** Size of a tar block: headers are one block, data is padded to whole blocks. */
export const BLOCK = 512;

/** The error every malformed archive raises: the input is at fault, not berth. */
export const bad = (msg: string) => new BerthError(Code.INVALID_ARGUMENT, `invalid tar stream: ${msg}`);

/** A NUL-terminated header field as a raw-byte latin1 string. */
export function cstr(buf: Buffer, start: number, len: number): string {
  let end = start;
  const max = start + len;
  while (end < max && buf[end] !== 0) end++;
  return buf.toString('latin1', start, end);
}

/** Reads a numeric header field: octal text, or GNU base-256 when the high bit is set. */
export function num(buf: Buffer, start: number, len: number): number {
  const first = buf[start] as number;
  if (first & 0x80) {
    const negative = first === 0xff;
    let v = negative ? -1 : first & 0x7f;
    for (let i = start + 1; i < start + len; i++) v = v * 256 + (buf[i] as number);
    if (!Number.isSafeInteger(v)) throw bad('numeric field out of range');
    return v;
  }
  let i = start;
  const end = start + len;
  while (i < end && (buf[i] === 0x20 || buf[i] === 0)) i++;
  let v = 0;
  let digits = 0;
  for (; i < end; i++) {
    const c = buf[i] as number;
    if (c === 0x20 || c === 0) break;
    if (c < 0x30 || c > 0x37) throw bad(`bad octal digit in header field at offset ${start}`);
    v = v * 8 + (c - 0x30);
    digits++;
  }
  if (digits > 0 && !Number.isSafeInteger(v)) throw bad('numeric field out of range');
  return v;
}

/** True when the header's checksum field matches its bytes (unsigned, or signed as old tars wrote). */
export function checksumOk(h: Buffer): boolean {
  const want = num(h, 148, 8);
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < BLOCK; i++) {
    const b = i >= 148 && i < 156 ? 0x20 : (h[i] as number);
    unsigned += b;
    signed += b > 127 ? b - 256 : b;
  }
  return want === unsigned || want === signed;
}

/** True for an all-zero block (the end-of-archive marker). */
export function isZero(h: Buffer): boolean {
  for (let i = 0; i < BLOCK; i++) if (h[i] !== 0) return false;
  return true;
}

/** Parses a PAX time ("1700000000.123456789", possibly negative) into seconds and nanoseconds. */
export function parsePaxTime(s: string): Timespec {
  const m = /^(-?)(\d+)(?:\.(\d*))?$/.exec(s);
  if (!m) throw bad(`bad PAX time "${s}"`);
  const sec = Number(m[2]);
  const frac = ((m[3] ?? '') + '000000000').slice(0, 9);
  const nsec = Number(frac);
  if (m[1] === '-') return nsec === 0 ? { sec: -sec, nsec: 0 } : { sec: -sec - 1, nsec: 1e9 - nsec };
  return { sec, nsec };
}

/** Parses a PAX decimal integer record (size, uid, gid). */
export function paxInt(key: string, s: string): number {
  if (!/^\d+$/.test(s)) throw bad(`bad PAX ${key} "${s}"`);
  const v = Number(s);
  if (!Number.isSafeInteger(v)) throw bad(`PAX ${key} out of range`);
  return v;
}

/** Parses PAX records ("<len> <key>=<value>\n"); values stay raw bytes (xattrs are binary). */
export function parsePax(data: Buffer): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  let off = 0;
  while (off < data.length) {
    if (data[off] === 0) break;
    const sp = data.indexOf(0x20, off);
    if (sp < 0 || sp - off > 20) throw bad('malformed PAX record length');
    const len = Number(data.toString('latin1', off, sp));
    if (!Number.isInteger(len) || len <= sp - off + 1 || off + len > data.length)
      throw bad('malformed PAX record');
    const rec = data.subarray(sp + 1, off + len);
    if (rec[rec.length - 1] !== 0x0a) throw bad('PAX record not terminated by a newline');
    const eq = rec.indexOf(0x3d);
    if (eq <= 0) throw bad('PAX record without a key');
    const key = rec.toString('latin1', 0, eq);
    const value = Buffer.from(rec.subarray(eq + 1, rec.length - 1));
    out.set(key, value);
    off += len;
  }
  return out;
}
