import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readlinkSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { MediaType } from '@berth/api';
import { type TarWriteEntry, tarBuffer } from '@berth/tar';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { nativeFs } from '../fs/native.js';
import { applyLayer, detectCompression } from './apply.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'berth-apply-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

// cap_net_raw+ep as a VFS_CAP_REVISION_2 security.capability value.
const CAP_NET_RAW = Buffer.from('0000000202000000000000000000000000000000', 'hex');
CAP_NET_RAW.writeUInt32LE(0x02000001, 0);
CAP_NET_RAW.writeUInt32LE(1 << 13, 4);

function blob(tar: Buffer, kind: 'none' | 'gzip' | 'zstd'): string {
  const p = join(dir, `blob-${kind}-${Math.random()}`);
  if (kind === 'gzip') writeFileSync(p, gzipSync(tar));
  else if (kind === 'zstd') writeFileSync(p, spawnSync('zstd', ['-c', '-q'], { input: tar }).stdout);
  else writeFileSync(p, tar);
  return p;
}

async function apply(
  entries: TarWriteEntry[],
  opts: { kind?: 'none' | 'gzip' | 'zstd'; parents?: string[] } = {},
) {
  const tar = tarBuffer(entries);
  const root = join(dir, `root-${Math.random()}`);
  mkdirSync(root);
  const kind = opts.kind ?? 'gzip';
  const mediaType =
    kind === 'gzip' ? MediaType.ociLayerGzip : kind === 'zstd' ? MediaType.ociLayerZstd : MediaType.ociLayer;
  const res = await applyLayer({
    blobPath: blob(tar, kind),
    mediaType,
    root,
    parents: opts.parents ?? [],
    maxUncompressedBytes: 1 << 30,
    what: 'layer test',
  });
  return { root, res, tar };
}

const sha = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

const exact: TarWriteEntry[] = [
  { name: 'bin/', type: 'dir', mode: 0o755, mtime: 1_600_000_000 },
  {
    name: 'bin/ping',
    type: 'file',
    mode: 0o4755,
    uid: 0,
    gid: 0,
    data: Buffer.from('ping'),
    mtime: 1_600_000_001,
    xattrs: { 'security.capability': CAP_NET_RAW },
  },
  { name: 'bin/sh', type: 'file', mode: 0o755, data: Buffer.from('#!shell\n'), mtime: 1_600_000_002.5 },
  { name: 'bin/ash', type: 'hardlink', linkname: 'bin/sh' },
  { name: 'bin/bash', type: 'symlink', linkname: 'sh', uid: 7, gid: 8, mtime: 1_500_000_000 },
  { name: 'tmp/', type: 'dir', mode: 0o1777, mtime: 1_600_000_003 },
  {
    name: 'srv/',
    type: 'dir',
    mode: 0o2750,
    uid: 1000,
    gid: 1001,
    mtime: 1_600_000_004,
    xattrs: { 'user.comment': 'hello' },
  },
  {
    name: 'srv/data',
    type: 'file',
    mode: 0o640,
    uid: 1000,
    gid: 1001,
    data: Buffer.alloc(70_000, 7),
    mtime: 1_600_000_005,
  },
  { name: 'dev/', type: 'dir', mode: 0o755, mtime: 1_600_000_006 },
  { name: 'dev/null', type: 'char', mode: 0o666, devmajor: 1, devminor: 3, mtime: 1_600_000_007 },
  { name: 'dev/sda', type: 'block', mode: 0o660, gid: 6, devmajor: 8, devminor: 0, mtime: 1_600_000_008 },
  { name: 'dev/pipe', type: 'fifo', mode: 0o600, mtime: 1_600_000_009 },
  { name: 'etc/.wh.passwd', type: 'file', mode: 0o644, uid: 3, gid: 4 },
  { name: 'var/.wh..wh..opq', type: 'file', mode: 0o644 },
  { name: 'a/very/' + 'long/'.repeat(40) + 'name.txt', type: 'file', data: Buffer.from('long') },
];

describe('applyLayer: exact as the overlay fast path', () => {
  for (const kind of ['none', 'gzip', 'zstd'] as const) {
    it(`writes every entry type with modes, owners, times and xattrs (${kind})`, async () => {
      const { root, res, tar } = await apply(exact, { kind });
      expect(res.compression).toBe(kind);
      expect(res.diffId).toBe(sha(tar));
      expect(res.uncompressedBytes).toBe(tar.length);

      const ping = lstatSync(join(root, 'bin/ping'));
      expect(ping.mode & 0o7777).toBe(0o4755);
      const caps = nativeFs().listXattrs(join(root, 'bin/ping'));
      expect(caps.find(([k]) => k === 'security.capability')?.[1]).toEqual(CAP_NET_RAW);
      expect(lstatSync(join(root, 'bin/sh')).mtimeMs).toBe(1_600_000_002_500);
      expect(lstatSync(join(root, 'bin/ash')).ino).toBe(lstatSync(join(root, 'bin/sh')).ino);
      const bash = lstatSync(join(root, 'bin/bash'));
      expect(bash.isSymbolicLink()).toBe(true);
      expect(readlinkSync(join(root, 'bin/bash'))).toBe('sh');
      expect([bash.uid, bash.gid, bash.mtimeMs]).toEqual([7, 8, 1_500_000_000_000]);
      expect(lstatSync(join(root, 'tmp')).mode & 0o7777).toBe(0o1777);
      const srv = lstatSync(join(root, 'srv'));
      expect([srv.mode & 0o7777, srv.uid, srv.gid, srv.mtimeMs]).toEqual([
        0o2750, 1000, 1001, 1_600_000_004_000,
      ]);
      expect(nativeFs().listXattrs(join(root, 'srv'))).toEqual([['user.comment', Buffer.from('hello')]]);
      expect(readFileSync(join(root, 'srv/data'))).toEqual(Buffer.alloc(70_000, 7));
      // Directory mtimes are set after their children were created.
      expect(lstatSync(join(root, 'dev')).mtimeMs).toBe(1_600_000_006_000);
      const nul = lstatSync(join(root, 'dev/null'));
      expect(nul.isCharacterDevice()).toBe(true);
      expect([nul.rdev >> 8, nul.rdev & 0xff, nul.mode & 0o7777]).toEqual([1, 3, 0o666]);
      const sda = lstatSync(join(root, 'dev/sda'));
      expect(sda.isBlockDevice()).toBe(true);
      expect([sda.rdev >> 8, sda.gid]).toEqual([8, 6]);
      expect(lstatSync(join(root, 'dev/pipe')).isFIFO()).toBe(true);
      const wh = lstatSync(join(root, 'etc/passwd'));
      expect(wh.isCharacterDevice()).toBe(true);
      expect([wh.rdev, wh.uid, wh.gid]).toEqual([0, 3, 4]);
      expect(() => lstatSync(join(root, 'etc/.wh.passwd'))).toThrow();
      expect(nativeFs().listXattrs(join(root, 'var'))).toEqual([
        ['trusted.overlay.opaque', Buffer.from('y')],
      ]);
      expect(() => lstatSync(join(root, 'var/.wh..wh..opq'))).toThrow();
      expect(readFileSync(join(root, `a/very/${'long/'.repeat(40)}name.txt`), 'utf8')).toBe('long');
    });
  }

  it('merges a duplicate directory, replaces a file by a later entry of the same name', async () => {
    const { root } = await apply([
      { name: 'd/', type: 'dir', mode: 0o700 },
      { name: 'd/x', type: 'file', data: Buffer.from('1') },
      { name: 'd/', type: 'dir', mode: 0o751, uid: 5 },
      { name: 'f', type: 'file', data: Buffer.from('first') },
      { name: 'f', type: 'symlink', linkname: 'd' },
      { name: 'g/', type: 'dir' },
      { name: 'g/child', type: 'file' },
      { name: 'g', type: 'file', data: Buffer.from('now a file') },
    ]);
    const d = lstatSync(join(root, 'd'));
    expect([d.mode & 0o7777, d.uid]).toEqual([0o751, 5]);
    expect(readFileSync(join(root, 'd/x'), 'utf8')).toBe('1');
    expect(readlinkSync(join(root, 'f'))).toBe('d');
    expect(readFileSync(join(root, 'g'), 'utf8')).toBe('now a file');
  });

  it('creates missing parents with the attributes the parent snapshot has', async () => {
    const lower = join(dir, 'lower');
    mkdirSync(join(lower, 'opt/app'), { recursive: true });
    spawnSync('chown', ['1234:99', join(lower, 'opt')]);
    spawnSync('chmod', ['0711', join(lower, 'opt')]);
    // xattrs come along too, except trusted.* (an opaque marker there must not hide the layers below).
    const fs = nativeFs();
    const fd = fs.openRoot(join(lower, 'opt'));
    fs.setXattrAt(fd, '', 'user.origin', Buffer.from('lower'));
    fs.setXattrAt(fd, '', 'trusted.overlay.opaque', Buffer.from('y'));
    fs.close(fd);
    const { root } = await apply([{ name: 'opt/app/new', type: 'file', data: Buffer.from('n') }], {
      parents: [lower],
    });
    const opt = lstatSync(join(root, 'opt'));
    expect([opt.uid, opt.gid, opt.mode & 0o7777]).toEqual([1234, 99, 0o711]);
    expect(fs.listXattrs(join(root, 'opt'))).toEqual([['user.origin', Buffer.from('lower')]]);
    expect(fs.listXattrs(join(root, 'opt/app'))).toEqual([]);

    // A nearer parent where the directory was deleted (whiteout) or replaced by a file: defaults.
    const upper = join(dir, 'upper');
    mkdirSync(upper);
    const ufd = fs.openRoot(upper);
    fs.mknodAt(ufd, 'opt', 0o020000, 0, 0);
    fs.close(ufd);
    const again = await apply([{ name: 'opt/app/newer', type: 'file' }], { parents: [upper, lower] });
    const opt2 = lstatSync(join(again.root, 'opt'));
    expect([opt2.uid, opt2.gid, opt2.mode & 0o7777]).toEqual([0, 0, 0o755]);
    expect(fs.listXattrs(join(again.root, 'opt'))).toEqual([]);
    expect(lstatSync(join(root, 'opt/app')).mode & 0o7777).toBe(0o755);
  });

  it('sets xattrs on symlinks and skips user.* xattrs the kernel refuses on special files', async () => {
    const { root } = await apply([
      { name: 'l', type: 'symlink', linkname: 'target', xattrs: { 'trusted.t': 'v' } },
      { name: 'p', type: 'fifo', xattrs: { 'user.u': 'x', 'trusted.k': 'kept' } },
    ]);
    expect(nativeFs().listXattrs(join(root, 'l'))).toEqual([['trusted.t', Buffer.from('v')]]);
    expect(nativeFs().listXattrs(join(root, 'p'))).toEqual([['trusted.k', Buffer.from('kept')]]);
  });

  it('bounds times as containerd: before 1970 becomes the epoch, atime is never before mtime', async () => {
    const { root } = await apply([
      { name: 'old', type: 'file', pax: { mtime: '-100.5' } },
      { name: 'new', type: 'file', mtime: 1_600_000_000, pax: { atime: '1500000000' } },
    ]);
    expect(lstatSync(join(root, 'old')).mtimeMs).toBe(0);
    const n = lstatSync(join(root, 'new'));
    expect([n.mtimeMs, n.atimeMs]).toEqual([1_600_000_000_000, 1_600_000_000_000]);
  });

  it('reads GNU long names and PAX times', async () => {
    const long = `${'x'.repeat(120)}/${'y'.repeat(120)}`;
    const { root } = await apply([
      { name: long, type: 'file', data: Buffer.from('gnu'), gnuLongNames: true, mtime: 1_234_567_890 },
      { name: 'l', type: 'symlink', linkname: `/${'t'.repeat(150)}`, gnuLongNames: true },
    ]);
    expect(readFileSync(join(root, long), 'utf8')).toBe('gnu');
    expect(lstatSync(join(root, long)).mtimeMs).toBe(1_234_567_890_000);
    expect(readlinkSync(join(root, 'l'))).toBe(`/${'t'.repeat(150)}`);
  });

  it('detects compression by magic bytes and refuses non-layer media types', () => {
    expect(detectCompression(MediaType.ociLayer, Buffer.from([0x1f, 0x8b, 0x08, 0]))).toBe('gzip');
    expect(detectCompression(MediaType.ociLayerGzip, Buffer.from([0x28, 0xb5, 0x2f, 0xfd]))).toBe('zstd');
    expect(detectCompression(MediaType.ociLayerGzip, Buffer.from('abcd'))).toBe('none');
    expect(() => detectCompression(MediaType.ociConfig, Buffer.alloc(4))).toThrow(/not a layer type/);
  });
});
