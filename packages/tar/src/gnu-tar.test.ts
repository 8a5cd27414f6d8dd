// Interoperability with the tar most users have: GNU tar reads what the writer writes, and the
// reader reads what GNU tar writes in its pax (POSIX) and gnu formats, xattrs included.
import { execFileSync } from 'node:child_process';
import { lstatSync, mkdtempSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TarEntry } from './entry.js';
import { TarParser } from './parser.js';
import { type TarWriteEntry, tarBuffer } from './writer.js';

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'berth-tar-gnu-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const tar = (...args: string[]) => execFileSync('tar', args, { stdio: ['ignore', 'pipe', 'pipe'] });

function entriesOf(archive: Buffer): Map<string, { e: TarEntry; data: Buffer }> {
  const out = new Map<string, { e: TarEntry; data: Buffer }>();
  let cur: { e: TarEntry; data: Buffer } | undefined;
  const parts: Buffer[] = [];
  const p = new TarParser({
    entry: (e) => {
      cur = { e, data: Buffer.alloc(0) };
      out.set(e.name.replace(/^\.\//, ''), cur);
      parts.length = 0;
    },
    data: (c) => parts.push(Buffer.from(c)),
    endEntry: () => {
      if (cur) cur.data = Buffer.concat(parts);
    },
  });
  p.write(archive);
  p.end();
  return out;
}

// A user.* xattr whose value is not valid UTF-8, and names past every ustar field length.
const XATTR = Buffer.from([0x00, 0x80, 0xff, 0xfe, 0x41]);
const longName = `${'deep/'.repeat(30)}file.txt`;
const longLink = `/${'t'.repeat(200)}`;
const written: TarWriteEntry[] = [
  { name: 'a/', type: 'dir', mode: 0o750, mtime: 1_600_000_000 },
  {
    name: 'a/x',
    type: 'file',
    mode: 0o640,
    data: Buffer.from('x data'),
    mtime: 1_600_000_001.5,
    xattrs: { 'user.bin': XATTR },
  },
  { name: 'a/l', type: 'symlink', linkname: longLink },
  { name: 'a/h', type: 'hardlink', linkname: 'a/x' },
  { name: longName, type: 'file', data: Buffer.alloc(100_000, 3), uid: 3_000_000 },
  { name: 'gnu/', type: 'dir' },
  { name: `gnu/${'g'.repeat(150)}`, type: 'file', data: Buffer.from('gnu'), gnuLongNames: true },
];

describe('GNU tar interoperability', () => {
  it('GNU tar extracts what the writer writes: names, data, modes, owners, times, links, xattrs', () => {
    const file = join(dir, 'ours.tar');
    writeFileSync(file, tarBuffer(written));
    const out = join(dir, 'out');
    execFileSync('mkdir', ['-p', out]);
    tar('-x', '--xattrs', '--xattrs-include=user.*', '--numeric-owner', '-f', file, '-C', out);
    expect(readFileSync(join(out, 'a/x'), 'utf8')).toBe('x data');
    const x = lstatSync(join(out, 'a/x'), { bigint: true });
    expect(Number(x.mode & 0o7777n)).toBe(0o640);
    expect(x.mtimeNs).toBe(1_600_000_001_500_000_000n);
    expect(x.nlink).toBe(2n);
    expect(readlinkSync(join(out, 'a/l'))).toBe(longLink);
    expect(readFileSync(join(out, longName)).equals(Buffer.alloc(100_000, 3))).toBe(true);
    expect(lstatSync(join(out, longName)).uid).toBe(3_000_000);
    expect(readFileSync(join(out, `gnu/${'g'.repeat(150)}`), 'utf8')).toBe('gnu');
    // GNU tar archives the tree again in POSIX format; the reader must find the same bytes.
    const again = tar('-c', '--format=posix', '--xattrs', '--numeric-owner', '-C', out, '.');
    const got = entriesOf(again);
    expect(got.get('a/x')?.e.xattrs).toEqual([['user.bin', XATTR]]);
    expect(got.get('a/x')?.data.toString()).toBe('x data');
    expect(got.get('a/l')?.e.linkname).toBe(longLink);
    expect(got.get(longName)?.e.uid).toBe(3_000_000);
    expect(got.get(longName)?.data.equals(Buffer.alloc(100_000, 3))).toBe(true);
  });

  it('reads GNU-format archives (L and K long-name records, base-256 owners)', () => {
    const src = join(dir, 'gnu-src');
    execFileSync('mkdir', ['-p', join(src, 'd'.repeat(120))]);
    writeFileSync(join(src, 'd'.repeat(120), 'f'.repeat(120)), 'content');
    execFileSync('ln', ['-s', `/${'k'.repeat(150)}`, join(src, 'sym')]);
    const archive = tar('-c', '--format=gnu', '--owner=4000000', '--numeric-owner', '-C', src, '.');
    const got = entriesOf(archive);
    const f = got.get(`${'d'.repeat(120)}/${'f'.repeat(120)}`);
    expect(f?.data.toString()).toBe('content');
    expect(f?.e.uid).toBe(4_000_000);
    expect(got.get('sym')?.e.linkname).toBe(`/${'k'.repeat(150)}`);
  });
});
