import { BerthError } from '@berth/api';
import { describe, expect, it } from 'vitest';
import type { TarEntry, TarLimits } from './entry.js';
import { TarParser } from './parser.js';
import { type TarWriteEntry, tarBuffer, tarHeader } from './writer.js';

interface Read {
  entry: TarEntry;
  data: Buffer;
}

/** Parses `tar` fed in pieces of `step` bytes; returns the entries with their data. */
function parse(tar: Buffer, step = tar.length, limits?: TarLimits): Read[] {
  const out: Read[] = [];
  let parts: Buffer[] = [];
  const p = new TarParser(
    {
      entry: (entry) => {
        out.push({ entry, data: Buffer.alloc(0) });
        parts = [];
      },
      data: (c) => parts.push(Buffer.from(c)),
      endEntry: () => {
        const last = out[out.length - 1] as Read;
        last.data = Buffer.concat(parts);
      },
    },
    limits,
  );
  for (let o = 0; o < tar.length; o += step) p.write(tar.subarray(o, o + step));
  p.end();
  return out;
}

function failure(fn: () => unknown): BerthError {
  try {
    fn();
  } catch (err) {
    if (err instanceof BerthError) return err;
    throw err;
  }
  throw new Error('expected a BerthError');
}

/** Sets the header checksum of the block at `off` after a test edited the header. */
function reseal(tar: Buffer, off: number): Buffer {
  tar.fill(0x20, off + 148, off + 156);
  let sum = 0;
  for (let i = off; i < off + 512; i++) sum += tar[i] as number;
  tar.write(`${sum.toString(8).padStart(6, '0')}\0 `, off + 148, 8, 'latin1');
  return tar;
}

// A security.capability value whose bytes are not valid UTF-8 (cap_setuid sets 0x80).
const CAP = Buffer.from('0100000280200000000000000000000000000000', 'hex');
const RAW = Buffer.from([0x63, 0x61, 0x66, 0xe9, 0xff]).toString('latin1');

const every: TarWriteEntry[] = [
  { name: 'd/', type: 'dir', mode: 0o2755, uid: 1000, gid: 1001, mtime: 1_600_000_000 },
  {
    name: 'd/f',
    type: 'file',
    mode: 0o4755,
    data: Buffer.alloc(70_000, 7),
    xattrs: { 'security.capability': CAP },
  },
  { name: 'd/empty', type: 'file' },
  { name: 'd/l', type: 'symlink', linkname: '../t' },
  { name: 'd/h', type: 'hardlink', linkname: 'd/f' },
  { name: 'dev/null', type: 'char', mode: 0o666, devmajor: 1, devminor: 3 },
  { name: 'dev/sda', type: 'block', devmajor: 8, devminor: 0 },
  { name: 'p', type: 'fifo', mode: 0o600 },
  { name: `${'long/'.repeat(40)}pax`, type: 'file', data: Buffer.from('pax'), mtime: 1_600_000_000.25 },
  { name: `${'gnu/'.repeat(40)}name`, type: 'symlink', linkname: `/${'t'.repeat(150)}`, gnuLongNames: true },
  { name: RAW, type: 'file', data: Buffer.from('raw') },
  { name: `${'r/'.repeat(60)}${RAW}`, type: 'file', uid: 3_000_000, gid: 4_000_000 },
];

describe('TarParser', () => {
  it('reads back every entry type the writer writes, exactly, however the stream is cut', () => {
    const tar = tarBuffer(every);
    for (const step of [tar.length, 1 << 16, 512, 511, 1]) {
      const got = parse(tar, step);
      expect(got.map((r) => r.entry.name)).toEqual(every.map((e) => e.name));
      expect(got.map((r) => r.entry.type)).toEqual(every.map((e) => e.type));
      const [dir, file, , link, hard, chr, blk, fifo, pax, gnu, , big] = got as Read[] & Read[];
      expect(dir?.entry).toMatchObject({
        mode: 0o2755,
        uid: 1000,
        gid: 1001,
        mtime: { sec: 1_600_000_000, nsec: 0 },
      });
      expect(file?.entry.mode).toBe(0o4755);
      expect(file?.data.equals(Buffer.alloc(70_000, 7))).toBe(true);
      expect(file?.entry.xattrs).toEqual([['security.capability', CAP]]);
      expect(link?.entry.linkname).toBe('../t');
      expect(hard?.entry.linkname).toBe('d/f');
      expect(chr?.entry).toMatchObject({ devmajor: 1, devminor: 3, mode: 0o666 });
      expect(blk?.entry).toMatchObject({ devmajor: 8, devminor: 0 });
      expect(fifo?.entry.mode).toBe(0o600);
      expect(pax?.entry.mtime).toEqual({ sec: 1_600_000_000, nsec: 250_000_000 });
      expect(pax?.data.toString()).toBe('pax');
      expect(gnu?.entry.linkname).toBe(`/${'t'.repeat(150)}`);
      expect(big?.entry).toMatchObject({ uid: 3_000_000, gid: 4_000_000 });
    }
  });

  it('keeps names and PAX values as raw bytes, never decoding them as UTF-8', () => {
    const got = parse(tarBuffer(every));
    expect(Buffer.from(got[10]?.entry.name ?? '', 'latin1')).toEqual(Buffer.from('636166e9ff', 'hex'));
    expect(got[11]?.entry.name.endsWith(RAW)).toBe(true);
    expect(got[1]?.entry.xattrs?.[0]?.[1].equals(CAP)).toBe(true);
  });

  it('reads negative PAX times and sizes past 8 GiB in base-256', () => {
    const tar = tarBuffer([{ name: 'old', type: 'file', mtime: -100.5 }]);
    expect(parse(tar)[0]?.entry.mtime).toEqual({ sec: -101, nsec: 500_000_000 });
    // The writer puts sizes past the 11 octal digits of the field in base-256.
    const huge = tarHeader({ name: 'h', type: 'file' }, 9 * 2 ** 30);
    expect(huge[124]).toBe(0x80);
    const seen: TarEntry[] = [];
    const p = new TarParser({ entry: (e) => seen.push(e), data: () => undefined, endEntry: () => undefined });
    p.write(huge.subarray(0, 512));
    expect(seen[0]?.size).toBe(9 * 2 ** 30);
  });

  it('bounds PAX and long-name records by the limit', () => {
    const tar = tarBuffer([{ name: 'f', type: 'file', pax: { comment: 'z'.repeat(5000) } }]);
    expect(failure(() => parse(tar, 512, { maxMetaBytes: 4096 })).code).toBe('RESOURCE_EXHAUSTED');
    expect(parse(tar, 512, { maxMetaBytes: 8192 })).toHaveLength(1);
    const gnu = tarBuffer([{ name: 'n'.repeat(6000), type: 'file', gnuLongNames: true }]);
    expect(failure(() => parse(gnu, 512, { maxMetaBytes: 4096 })).code).toBe('RESOURCE_EXHAUSTED');
  });

  it('refuses corrupt headers, bad fields, truncation and what it cannot apply', () => {
    const good = tarBuffer([{ name: 'f', type: 'file', data: Buffer.alloc(5000, 1) }], { endMarker: false });
    const sum = Buffer.from(good);
    sum[10] = 0x41;
    expect(failure(() => parse(sum)).message).toContain('checksum');
    expect(failure(() => parse(good.subarray(0, 2000))).message).toContain('truncated');
    const octal = reseal(Buffer.from(good).fill(0x39, 100, 101), 0);
    expect(failure(() => parse(octal)).message).toContain('bad octal digit');
    const sparse = reseal(Buffer.from(good).fill(0x53, 156, 157), 0);
    expect(failure(() => parse(sparse)).code).toBe('UNIMPLEMENTED');
    const paxSparse = tarBuffer([{ name: 's', type: 'file', pax: { 'GNU.sparse.major': '1' } }]);
    expect(failure(() => parse(paxSparse)).code).toBe('UNIMPLEMENTED');
    const odd = reseal(Buffer.from(good).fill(0x56, 156, 157), 0);
    expect(failure(() => parse(odd)).message).toContain('unsupported type');
    const owner = tarBuffer([{ name: 'o', type: 'file', pax: { uid: String(2 ** 32) } }]);
    expect(failure(() => parse(owner)).message).toContain('out-of-range owner');
    const badPax = tarBuffer([{ name: 'b', type: 'file', pax: { size: 'x' } }]);
    expect(failure(() => parse(badPax)).message).toContain('bad PAX size');
    const dangling = tarBuffer([{ name: 'x'.repeat(200), type: 'file' }], { endMarker: false }).subarray(
      0,
      1024,
    );
    expect(failure(() => parse(dangling)).message).toContain('truncated');
  });

  it('stops at the end-of-archive marker and ignores what follows', () => {
    const tar = Buffer.concat([tarBuffer([{ name: 'a', type: 'file' }]), Buffer.alloc(512, 0x41)]);
    expect(parse(tar).map((r) => r.entry.name)).toEqual(['a']);
  });
});
