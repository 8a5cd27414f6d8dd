// Verification against an independent reference: the same fixture images are unpacked by berth
// (layer snapshots, mounted as the overlay a container would get) and by umoci (which applies the
// layers on top of each other into one tree), and the two trees must agree on every path's type,
// mode, owner, size, content hash, link target, device number, xattrs and (for non-directories)
// mtime. Fixtures are built here from busybox-static and hand-written layers that delete and
// replace files and directories in later layers (whiteouts and opaque directories).
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { lstatSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chainIds, type Mount } from '@berth/api';
import type { TarWriteEntry } from '@berth/tar';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nativeFs } from './fs/native.js';
import { type SnapshotEnv, startSnapshotEnv } from './testing/env.js';
import { type FixtureLayer, putImage, putLayer, writeOciLayout } from './testing/oci.js';

let env: SnapshotEnv;
let work: string;
beforeAll(async () => {
  env = await startSnapshotEnv();
  work = mkdtempSync(join(tmpdir(), 'berth-ref-'));
});
afterAll(async () => {
  await env?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

const busybox = readFileSync('/usr/bin/busybox');
const CAP = Buffer.alloc(20);
CAP.writeUInt32LE(0x02000001, 0);
CAP.writeUInt32LE(1 << 13, 4);
const T = 1_700_000_000;

/** Everything observable about a tree, one line per path (the root itself excluded). */
function describeTree(top: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (rel: string) => {
    const p = join(top, rel);
    const st = lstatSync(p, { bigint: true });
    const type = st.isDirectory()
      ? 'd'
      : st.isFile()
        ? 'f'
        : st.isSymbolicLink()
          ? 'l'
          : st.isCharacterDevice()
            ? 'c'
            : st.isBlockDevice()
              ? 'b'
              : st.isFIFO()
                ? 'p'
                : '?';
    const xattrs = nativeFs()
      .listXattrs(p)
      .filter(([k]) => !k.startsWith('trusted.overlay.'))
      .map(([k, v]) => `${k}=${v.toString('hex')}`)
      .sort()
      .join(',');
    const parts = [type, (st.mode & 0o7777n).toString(8), `${st.uid}:${st.gid}`];
    if (type === 'f')
      parts.push(String(st.size), createHash('sha256').update(readFileSync(p)).digest('hex').slice(0, 16));
    if (type === 'l') parts.push(`-> ${readlinkSync(p)}`);
    if (type === 'c' || type === 'b') parts.push(`${st.rdev >> 8n}:${st.rdev & 0xffn}`);
    if (type !== 'd') parts.push(`mtime=${st.mtimeNs}`);
    if (xattrs) parts.push(`xattrs=${xattrs}`);
    if (rel !== '') out.set(rel, parts.join(' '));
    if (type === 'd') for (const n of readdirSync(p)) walk(rel === '' ? n : `${rel}/${n}`);
  };
  walk('');
  return out;
}

function run(cmd: string, args: string[]): void {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.stderr}`);
}

/** umoci gets `refLayers` (same tars, so same DiffIDs, possibly compressed differently). */
async function compare(
  name: string,
  layers: FixtureLayer[],
  refLayers: FixtureLayer[] = layers,
): Promise<void> {
  const blobs = env.layout.content.blobs;
  expect(refLayers.map((l) => l.diffId)).toEqual(layers.map((l) => l.diffId));
  const image = putImage(blobs, refLayers);
  const layoutDir = join(work, `${name}-oci`);
  writeOciLayout(layoutDir, blobs, image, 'v1');
  const bundle = join(work, `${name}-bundle`);
  run('umoci', ['unpack', '--image', `${layoutDir}:v1`, bundle]);

  // Forget what earlier cases unpacked, so every layer here is really applied.
  await env.client.gc({ graceMs: 0 });
  const res = await env.client.unpack({
    layers: layers.map((l) => l.descriptor),
    diffIds: layers.map((l) => l.diffId),
  });
  expect(res.applied).toBe(layers.length);
  const view = await env.client.view({ key: `ref-${name}`, parent: res.chainId });
  const m = view.mounts[0] as Mount;
  const target = join(work, `${name}-mnt`);
  run('mkdir', ['-p', target]);
  if (m.type === 'bind') run('mount', ['--bind', '-o', m.options.join(','), m.source, target]);
  else run('mount', ['-t', m.type, '-o', m.options.join(','), m.source, target]);
  try {
    const ours = describeTree(target);
    const theirs = describeTree(join(bundle, 'rootfs'));
    const diff: string[] = [];
    for (const [p, v] of theirs)
      if (ours.get(p) !== v) diff.push(`${p}\n  umoci: ${v}\n  berth: ${ours.get(p) ?? '(missing)'}`);
    for (const [p, v] of ours) if (!theirs.has(p)) diff.push(`${p}\n  umoci: (missing)\n  berth: ${v}`);
    expect(diff.join('\n')).toBe('');
    expect(ours.size).toBeGreaterThan(5);
    if (process.env.REF_DEBUG) console.log([...ours].map(([k, v]) => `${k} ${v}`).join('\n'));
  } finally {
    spawnSync('umount', [target]);
    await env.client.remove({ key: `ref-${name}` });
  }
}

const base: TarWriteEntry[] = [
  { name: 'bin/', type: 'dir', mode: 0o755, mtime: T },
  { name: 'bin/busybox', type: 'file', mode: 0o755, data: busybox, mtime: T + 1 },
  { name: 'bin/sh', type: 'symlink', linkname: 'busybox', mtime: T + 2 },
  { name: 'bin/ls', type: 'symlink', linkname: '/bin/busybox', mtime: T + 3 },
  { name: 'bin/su', type: 'hardlink', linkname: 'bin/busybox' },
  { name: 'etc/', type: 'dir', mode: 0o755, mtime: T },
  {
    name: 'etc/passwd',
    type: 'file',
    mode: 0o644,
    data: Buffer.from('root:x:0:0:root:/root:/bin/sh\n'),
    mtime: T + 4,
  },
  { name: 'etc/hostname', type: 'file', mode: 0o644, data: Buffer.from('berth\n'), mtime: T + 5 },
  {
    name: 'etc/shadow',
    type: 'file',
    mode: 0o640,
    gid: 42,
    data: Buffer.from('root:*:1::::::\n'),
    mtime: T + 5.25,
  },
  { name: 'tmp/', type: 'dir', mode: 0o1777, mtime: T },
  { name: 'root/', type: 'dir', mode: 0o700, mtime: T },
  { name: 'usr/', type: 'dir', mode: 0o755, mtime: T },
  { name: 'usr/bin/', type: 'dir', mode: 0o755, mtime: T },
  { name: 'usr/bin/passwd', type: 'file', mode: 0o4755, data: Buffer.from('setuid'), mtime: T + 6 },
  { name: 'usr/bin/wall', type: 'file', mode: 0o2755, gid: 5, data: Buffer.from('setgid'), mtime: T + 6 },
  {
    name: 'usr/bin/ping',
    type: 'file',
    mode: 0o755,
    data: Buffer.from('ping'),
    xattrs: { 'security.capability': CAP },
    mtime: T + 7,
  },
  { name: 'usr/bin/env', type: 'symlink', linkname: '/bin/busybox', uid: 3, gid: 3, mtime: T + 8 },
  { name: 'home/', type: 'dir', mode: 0o755, mtime: T },
  { name: 'home/user/', type: 'dir', mode: 0o2750, uid: 1000, gid: 1000, mtime: T },
  {
    name: 'home/user/notes',
    type: 'file',
    mode: 0o600,
    uid: 1000,
    gid: 1000,
    data: Buffer.from('n'),
    xattrs: { 'user.mime_type': 'text/plain' },
    mtime: T + 9,
  },
  { name: 'dev/', type: 'dir', mode: 0o755, mtime: T },
  { name: 'dev/null', type: 'char', mode: 0o666, devmajor: 1, devminor: 3, mtime: T + 10 },
  { name: 'dev/loop0', type: 'block', mode: 0o660, gid: 6, devmajor: 7, devminor: 0, mtime: T + 10 },
  { name: 'run/', type: 'dir', mode: 0o755, mtime: T },
  { name: 'run/initctl', type: 'fifo', mode: 0o600, mtime: T + 11 },
  { name: 'var/', type: 'dir', mode: 0o755, mtime: T },
  { name: 'var/cache/', type: 'dir', mode: 0o755, mtime: T },
  { name: 'var/cache/a', type: 'file', data: Buffer.from('a'), mtime: T + 12 },
  { name: 'var/cache/b/', type: 'dir', mtime: T },
  { name: 'var/cache/b/deep', type: 'file', data: Buffer.from('deep'), mtime: T + 12 },
  { name: 'var/log/', type: 'dir', mode: 0o750, gid: 4, xattrs: { 'user.dir': 'kept' }, mtime: T },
  { name: 'var/lib/', type: 'dir', mode: 0o755, mtime: T },
  { name: 'var/lib/data/', type: 'dir', mode: 0o755, mtime: T },
  { name: 'var/lib/data/x', type: 'file', data: Buffer.from('x'), mtime: T + 13 },
  { name: 'opt/', type: 'dir', mode: 0o755, uid: 1000, mtime: T },
  { name: 'opt/tool/', type: 'dir', mode: 0o755, mtime: T },
  { name: 'opt/tool/run', type: 'file', mode: 0o755, data: Buffer.from('run'), mtime: T + 14 },
  {
    name: `srv/${'long-directory-name/'.repeat(6)}file-with-a-long-name.txt`,
    type: 'file',
    data: Buffer.from('long'),
    mtime: T + 15,
  },
];

const changes: TarWriteEntry[] = [
  { name: 'etc/', type: 'dir', mode: 0o755, mtime: T + 100 },
  { name: 'etc/.wh.hostname', type: 'file', mtime: T + 100 },
  {
    name: 'etc/passwd',
    type: 'file',
    mode: 0o600,
    data: Buffer.from('root:x:0:0::/root:/bin/ash\nuser:x:1000:1000::/home/user:/bin/sh\n'),
    mtime: T + 101,
  },
  { name: 'var/', type: 'dir', mode: 0o755, mtime: T },
  { name: 'var/cache/', type: 'dir', mode: 0o700, mtime: T + 102 },
  { name: 'var/cache/.wh..wh..opq', type: 'file', mtime: T + 102 },
  { name: 'var/cache/c', type: 'file', data: Buffer.from('c'), mtime: T + 103 },
  { name: 'var/lib/', type: 'dir', mode: 0o755, mtime: T },
  { name: 'var/lib/data', type: 'file', data: Buffer.from('a directory became a file'), mtime: T + 104 },
  { name: 'bin/', type: 'dir', mode: 0o755, mtime: T },
  { name: 'bin/ls', type: 'file', mode: 0o755, data: Buffer.from('a symlink became a file'), mtime: T + 105 },
  { name: 'home/', type: 'dir', mode: 0o755, mtime: T },
  { name: 'home/user/', type: 'dir', mode: 0o2750, uid: 1000, gid: 1000, mtime: T },
  {
    name: 'home/user/.profile',
    type: 'file',
    uid: 1000,
    gid: 1000,
    data: Buffer.from('export PS1=$\n'),
    mtime: T + 106,
  },
  { name: 'tmp/', type: 'dir', mode: 0o1777, mtime: T + 107 },
  { name: 'tmp/.wh.never-existed', type: 'file', mtime: T + 107 },
];

const third: TarWriteEntry[] = [
  { name: '.wh.opt', type: 'file', mtime: T + 200 },
  { name: 'etc/', type: 'dir', mode: 0o755, mtime: T + 200 },
  { name: 'etc/hostname', type: 'file', data: Buffer.from('again\n'), mtime: T + 201 },
  { name: 'usr/', type: 'dir', mode: 0o755, mtime: T },
  { name: 'usr/bin/', type: 'dir', mode: 0o755, mtime: T },
  { name: 'usr/bin/.wh.wall', type: 'file', mtime: T + 202 },
  { name: 'usr/bin/wall/', type: 'dir', mode: 0o750, mtime: T + 202 },
  {
    name: 'usr/bin/wall/inside',
    type: 'file',
    data: Buffer.from('a file became a directory'),
    mtime: T + 203,
  },
  { name: 'var/', type: 'dir', mode: 0o755, mtime: T },
  { name: 'var/lib/', type: 'dir', mode: 0o755, mtime: T },
  { name: 'var/lib/data', type: 'symlink', linkname: '../cache', mtime: T + 204 },
  // No entry for var/log/ either: created in this layer's snapshot, it keeps the mode, owner and
  // user.* xattr of the layer below, as containerd copies them up.
  { name: 'var/log/added', type: 'file', data: Buffer.from('log'), mtime: T + 204 },
  // No entries for home/ and home/user/: they are created with the attributes the layers below
  // give them (2750 1000:1000), or the merged tree would differ from umoci's.
  { name: 'home/user/.wh.notes', type: 'file', mtime: T + 205 },
  { name: 'srv/long-directory-name/added', type: 'file', data: Buffer.from('added'), mtime: T + 206 },
];

/** The fs directory of a committed layer snapshot (via a view's mounts). */
async function layerDir(chainId: string): Promise<string> {
  const key = `layer-dir-${Math.random()}`;
  const m = (await env.client.view({ key, parent: chainId })).mounts[0] as Mount;
  await env.client.remove({ key });
  if (m.type === 'bind') return m.source;
  return (m.options.find((o) => o.startsWith('lowerdir=')) ?? '')
    .slice('lowerdir='.length)
    .split(':')[0] as string;
}

/** Each `.wh.` entry of a layer is a 0/0 char device in its snapshot, each opaque marker an xattr. */
async function checkWhiteouts(chainId: string, entries: TarWriteEntry[]): Promise<number> {
  const dir = await layerDir(chainId);
  // A whiteout followed by a new entry of the same name in the same layer is replaced by it.
  const recreated = new Set(entries.map((e) => e.name.replace(/\/$/, '')));
  let n = 0;
  for (const e of entries) {
    const slash = e.name.lastIndexOf('/');
    const parent = e.name.slice(0, slash + 1);
    const base = e.name.slice(slash + 1);
    if (base === '.wh..wh..opq') {
      expect(nativeFs().listXattrs(join(dir, parent))).toContainEqual([
        'trusted.overlay.opaque',
        Buffer.from('y'),
      ]);
      n++;
    } else if (base.startsWith('.wh.') && !recreated.has(`${parent}${base.slice(4)}`)) {
      const st = lstatSync(join(dir, parent, base.slice(4)));
      expect(st.isCharacterDevice() && st.rdev === 0, e.name).toBe(true);
      n++;
    }
  }
  return n;
}

describe('berth unpack matches umoci', () => {
  it('a single busybox layer', async () => {
    await compare('single', [putLayer(env.layout.content.blobs, base, 'gzip')]);
  });

  it('three layers that delete and replace files and directories', async () => {
    const blobs = env.layout.content.blobs;
    const layers = [
      putLayer(blobs, base, 'gzip'),
      putLayer(blobs, changes, 'gzip'),
      putLayer(blobs, third, 'none'),
    ];
    await compare('multi', layers);
    const chain = chainIds(layers.map((l) => l.diffId));
    expect(await checkWhiteouts(chain[1] as string, changes)).toBe(3);
    expect(await checkWhiteouts(chain[2] as string, third)).toBe(2);
    expect(lstatSync(join(await layerDir(chain[2] as string), 'usr/bin/wall')).isDirectory()).toBe(true);
  });

  it('the same layers zstd-compressed (umoci 0.4.7 reads them gzip-compressed)', async () => {
    const blobs = env.layout.content.blobs;
    const all = [base, changes, third];
    await compare(
      'zstd',
      all.map((l) => putLayer(blobs, l, 'zstd')),
      all.map((l) => putLayer(blobs, l, 'gzip')),
    );
  });
});
