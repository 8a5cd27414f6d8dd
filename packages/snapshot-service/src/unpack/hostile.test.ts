import { createHash } from 'node:crypto';
import {
  chmodSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { BerthError, MediaType } from '@berth/api';
import { type TarWriteEntry, tarBuffer, tarChunks } from '@berth/tar';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { nativeFs } from '../fs/native.js';
import { applyLayer } from './apply.js';

// Each case applies a hand-made hostile layer into <base>/root while a canary tree sits beside
// it at <base>/canary; afterwards the canary (and the rest of <base>) must be bit-for-bit the
// same: paths, types, modes, owners, times, contents, link targets and xattrs.
let base: string;
let root: string;
let canary: string;

/** A digest of everything observable about a tree. */
function treeHash(top: string): string {
  const h = createHash('sha256');
  const walk = (p: string, rel: string) => {
    const st = lstatSync(p, { bigint: true });
    h.update(`${rel}|${st.mode}|${st.uid}|${st.gid}|${st.size}|${st.mtimeNs}|${st.nlink}\n`);
    for (const [k, v] of nativeFs().listXattrs(p)) h.update(`x:${k}=${v.toString('hex')}\n`);
    if (st.isSymbolicLink()) h.update(`l:${readlinkSync(p)}\n`);
    else if (st.isFile()) h.update(readFileSync(p));
    else if (st.isDirectory()) for (const n of readdirSync(p).sort()) walk(join(p, n), `${rel}/${n}`);
  };
  walk(top, '.');
  return h.digest('hex');
}

beforeEach(() => {
  base = mkdtempSync(join(tmpdir(), 'berth-hostile-'));
  root = join(base, 'root');
  canary = join(base, 'canary');
  mkdirSync(root);
  mkdirSync(join(canary, 'sub'), { recursive: true });
  writeFileSync(join(canary, 'secret'), 'do not touch');
  chmodSync(join(canary, 'secret'), 0o600);
  writeFileSync(join(canary, 'sub', 'file'), 'x');
  symlinkSync('secret', join(canary, 'link'));
});
afterEach(() => rmSync(base, { recursive: true, force: true }));

async function applyHostile(
  entries: TarWriteEntry[] | Buffer,
  opts: { limit?: number; gzip?: boolean } = {},
): Promise<BerthError | undefined> {
  const before = treeHash(canary);
  const siblings = readdirSync(base).sort();
  const tar = Buffer.isBuffer(entries) ? entries : tarBuffer(entries);
  const blob = join(base, 'blob');
  writeFileSync(blob, opts.gzip === false ? tar : gzipSync(tar));
  let failure: BerthError | undefined;
  try {
    await applyLayer({
      blobPath: blob,
      mediaType: MediaType.ociLayerGzip,
      root,
      parents: [],
      maxUncompressedBytes: opts.limit ?? 1 << 30,
      what: 'hostile layer',
    });
  } catch (err) {
    if (!(err instanceof BerthError)) throw err;
    failure = err;
  }
  rmSync(blob);
  expect(treeHash(canary)).toBe(before);
  expect(readdirSync(base).sort()).toEqual(siblings);
  return failure;
}

describe('hostile layers never touch the host', () => {
  it('clamps ".." and absolute paths to the snapshot root', async () => {
    const err = await applyHostile([
      { name: '../../../../../../escape-dotdot', type: 'file', data: Buffer.from('a') },
      { name: 'a/../../canary/secret', type: 'file', data: Buffer.from('b') },
      { name: `${canary}/secret`, type: 'file', data: Buffer.from('c'), mode: 0o777 },
      { name: '/../canary/sub/', type: 'dir', mode: 0o777 },
    ]);
    expect(err).toBeUndefined();
    expect(readFileSync(join(root, 'escape-dotdot'), 'utf8')).toBe('a');
    expect(readFileSync(join(root, 'canary/secret'), 'utf8')).toBe('b');
    expect(readFileSync(join(root, canary, 'secret'), 'utf8')).toBe('c');
  });

  it('applies the same rules to names from PAX records and GNU long names', async () => {
    const err = await applyHostile([
      { name: 'innocent', type: 'file', data: Buffer.from('pax'), pax: { path: `../../../..${canary}/pax` } },
      {
        name: `../../../../${'x/'.repeat(60)}gnu`,
        type: 'file',
        data: Buffer.from('gnu'),
        gnuLongNames: true,
      },
      { name: 'hl', type: 'hardlink', linkname: 'innocent', pax: { linkpath: `${canary}/secret` } },
    ]);
    expect(err?.code).toBe('INVALID_ARGUMENT');
    expect(readFileSync(join(root, canary, 'pax'), 'utf8')).toBe('pax');
    expect(readFileSync(join(root, `${'x/'.repeat(60)}gnu`), 'utf8')).toBe('gnu');
  });

  it('resolves a parent that is an absolute symlink to outside inside the root', async () => {
    const err = await applyHostile([
      { name: 'evil', type: 'symlink', linkname: canary },
      { name: 'evil/pwned', type: 'file', data: Buffer.from('p') },
      { name: 'evil/secret', type: 'file', data: Buffer.from('p'), mode: 0o777 },
    ]);
    // The target does not exist inside the root, so the entry cannot be placed: refused.
    expect(err?.code).toBe('INVALID_ARGUMENT');
    expect(err?.message).toContain('evil/pwned');
  });

  it('follows an absolute symlink parent only within the root when the target exists there', async () => {
    const err = await applyHostile([
      { name: `${canary.slice(1)}/`, type: 'dir' },
      { name: 'evil', type: 'symlink', linkname: canary },
      { name: 'evil/pwned', type: 'file', data: Buffer.from('p') },
    ]);
    expect(err).toBeUndefined();
    expect(readFileSync(join(root, canary, 'pwned'), 'utf8')).toBe('p');
  });

  it('resolves a relative symlink parent climbing out with ".." inside the root', async () => {
    const err = await applyHostile([
      { name: 'canary/', type: 'dir' },
      { name: 'x/', type: 'dir' },
      { name: 'x/evil', type: 'symlink', linkname: '../../../../../../../canary' },
      { name: 'x/evil/secret', type: 'file', data: Buffer.from('in root'), mode: 0o4777 },
      { name: 'x/evil/sub/', type: 'dir', mode: 0o777 },
    ]);
    expect(err).toBeUndefined();
    expect(readFileSync(join(root, 'canary/secret'), 'utf8')).toBe('in root');
  });

  it('refuses hardlinks to targets outside the layer', async () => {
    for (const linkname of [`${canary}/secret`, '../canary/secret', '../../../../canary/secret']) {
      const err = await applyHostile([{ name: 'hl', type: 'hardlink', linkname }]);
      expect(err?.code).toBe('INVALID_ARGUMENT');
      expect(err?.message).toMatch(/hardlink target .* does not exist in the layer/);
    }
    const viaSymlink = await applyHostile([
      { name: 'evil', type: 'symlink', linkname: canary },
      { name: 'hl', type: 'hardlink', linkname: 'evil/secret' },
    ]);
    expect(viaSymlink?.code).toBe('INVALID_ARGUMENT');
    const toDir = await applyHostile([
      { name: 'd/', type: 'dir' },
      { name: 'hl', type: 'hardlink', linkname: 'd' },
    ]);
    expect(toDir?.code).toBe('INVALID_ARGUMENT');
    // A hardlink to a symlink links the symlink itself, never what it points at.
    const toLink = await applyHostile([
      { name: 'l', type: 'symlink', linkname: `${canary}/secret` },
      { name: 'hl', type: 'hardlink', linkname: 'l' },
      { name: 'hl', type: 'file', data: Buffer.from('overwrite?') },
    ]);
    expect(toLink).toBeUndefined();
    expect(lstatSync(join(root, 'l')).isSymbolicLink()).toBe(true);
  });

  it('refuses whiteouts that try to escape and keeps the others inside', async () => {
    for (const name of ['a/.wh..', 'a/.wh.', '.wh...']) {
      const err = await applyHostile([{ name, type: 'file' }]);
      expect(err?.code, name).toBe('INVALID_ARGUMENT');
    }
    const through = await applyHostile([
      { name: 'evil', type: 'symlink', linkname: canary },
      { name: 'evil/.wh.secret', type: 'file' },
    ]);
    expect(through?.code).toBe('INVALID_ARGUMENT');
    const opaque = await applyHostile([
      { name: 'evil2', type: 'symlink', linkname: '../canary' },
      { name: 'evil2/.wh..wh..opq', type: 'file' },
    ]);
    expect(opaque?.code).toBe('INVALID_ARGUMENT');
    const clamped = await applyHostile([{ name: '../../canary/.wh.secret', type: 'file' }]);
    expect(clamped).toBeUndefined();
    expect(lstatSync(join(root, 'canary/secret')).isCharacterDevice()).toBe(true);
  });

  it('replaces a symlink by a later file of the same name instead of writing through it', async () => {
    const err = await applyHostile([
      { name: 'link', type: 'symlink', linkname: `${canary}/secret` },
      { name: 'link', type: 'file', data: Buffer.from('replaced'), mode: 0o777 },
      { name: 'dirlink', type: 'symlink', linkname: canary },
      { name: 'dirlink', type: 'dir', mode: 0o777, uid: 1234 },
      { name: 'rel', type: 'symlink', linkname: '../canary/secret' },
      { name: 'rel', type: 'fifo', mode: 0o777 },
    ]);
    expect(err).toBeUndefined();
    expect(readFileSync(join(root, 'link'), 'utf8')).toBe('replaced');
    expect(lstatSync(join(root, 'dirlink')).isDirectory()).toBe(true);
    expect(lstatSync(join(root, 'rel')).isFIFO()).toBe(true);
  });

  it('handles duplicate entries of every kind without leaving the root', async () => {
    const err = await applyHostile([
      { name: 'dup', type: 'file', data: Buffer.from('1') },
      { name: 'dup', type: 'file', data: Buffer.from('2') },
      { name: 'dup/', type: 'dir' },
      { name: 'dup/inner', type: 'file', data: Buffer.from('3') },
      { name: 'dup', type: 'symlink', linkname: canary },
      { name: 'dup', type: 'hardlink', linkname: 'dup' },
    ]);
    // A hardlink to itself names the symlink just written: the link replaces it with itself.
    expect(err === undefined || err.code === 'INVALID_ARGUMENT').toBe(true);
    expect(existsSync(join(root, 'dup/inner'))).toBe(false);
  });

  it('creates device nodes as nodes and never opens them', async () => {
    const err = await applyHostile([
      { name: 'dev/', type: 'dir' },
      { name: 'dev/sda', type: 'block', devmajor: 8, devminor: 0, mode: 0o666 },
      {
        name: 'dev/kmsg',
        type: 'char',
        devmajor: 1,
        devminor: 11,
        data: Buffer.from('data for a device is skipped'),
      },
      { name: 'dev/fifo', type: 'fifo' },
      // Opening a FIFO for writing would block forever: the file replaces it instead.
      { name: 'dev/fifo', type: 'file', data: Buffer.from('not through the fifo') },
      { name: 'dev/null', type: 'char', devmajor: 1, devminor: 3 },
      { name: 'dev/null', type: 'file', data: Buffer.from('not into /dev/null') },
    ]);
    expect(err).toBeUndefined();
    const sda = lstatSync(join(root, 'dev/sda'));
    expect(sda.isBlockDevice()).toBe(true);
    expect(sda.rdev).toBe(lstatSync('/dev/sda', { throwIfNoEntry: false })?.rdev ?? 8 << 8);
    expect(lstatSync(join(root, 'dev/kmsg')).isCharacterDevice()).toBe(true);
    expect(readFileSync(join(root, 'dev/fifo'), 'utf8')).toBe('not through the fifo');
    expect(readFileSync(join(root, 'dev/null'), 'utf8')).toBe('not into /dev/null');
  });

  it('stops a decompression bomb at the configured limit', async () => {
    const huge = {
      size: 256 << 20,
      chunks: function* () {
        for (let i = 0; i < 256; i++) yield Buffer.alloc(1 << 20);
      },
    };
    const tar = Buffer.concat([...tarChunks([{ name: 'bomb', type: 'file', data: huge }])]);
    const err = await applyHostile(tar, { limit: 16 << 20 });
    expect(err?.code).toBe('RESOURCE_EXHAUSTED');
    expect(err?.message).toContain('maxLayerUncompressedBytes');
    expect(lstatSync(join(root, 'bomb')).size).toBeLessThanOrEqual(16 << 20);
  });

  it('bounds PAX records and refuses corrupt or truncated archives', async () => {
    const bigPax = await applyHostile([{ name: 'f', type: 'file', pax: { comment: 'z'.repeat(2 << 20) } }]);
    expect(bigPax?.code).toBe('RESOURCE_EXHAUSTED');
    const good = tarBuffer([{ name: 'f', type: 'file', data: Buffer.alloc(5000, 1) }], { endMarker: false });
    const truncated = await applyHostile(good.subarray(0, 2000));
    expect(truncated?.code).toBe('INVALID_ARGUMENT');
    const corrupt = Buffer.from(good);
    corrupt[10] = 0x41;
    const badSum = await applyHostile(corrupt);
    expect(badSum?.message).toContain('checksum');
  });
});
