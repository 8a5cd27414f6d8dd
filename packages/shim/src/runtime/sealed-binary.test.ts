import { execFileSync, spawnSync } from 'node:child_process';
import {
  chmodSync,
  copyFileSync,
  existsSync,
  readlinkSync,
  statSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { SealedBinary } from './sealed-binary.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sealed-binary-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});
afterEach(() => {
  vi.useRealTimers();
});

/** An executable script printing `word`. */
function script(path: string, word: string): void {
  writeFileSync(path, `#!/bin/sh\necho ${word}\n`);
  chmodSync(path, 0o755);
}

describe('SealedBinary', () => {
  it('runs the binary from a sealed memfd that cannot be written', async () => {
    const bin = join(dir, 'busybox');
    copyFileSync('/usr/bin/busybox', bin);
    const s = new SealedBinary(bin);
    const lease = await s.lease();
    expect(lease.sealed).toBe(true);
    expect(lease.path).toMatch(new RegExp(`^/proc/${process.pid}/fd/\\d+$`));
    expect(readlinkSync(lease.path)).toBe('/memfd:runc (deleted)');
    // busybox picks its applet by argv[0]: named as the binary, it takes the first argument.
    const out = spawnSync(lease.path, ['echo', 'from the copy'], { encoding: 'utf8', argv0: 'busybox' });
    expect(out.stdout).toBe('from the copy\n');
    // F_SEAL_WRITE: no write through any descriptor, whoever opens it.
    expect(() => writeFileSync(lease.path, 'x', { flag: 'r+' })).toThrow(/EPERM/);
    lease.release();
  });

  it('makes a new copy when the mode of the one held was changed (the seals do not stop chmod)', async () => {
    const bin = join(dir, 'chmodded');
    script(bin, 'fresh');
    const errors: Error[] = [];
    const s = new SealedBinary(bin, (err) => errors.push(err));
    const first = await s.lease();
    first.release();
    // As a root process of a container running from the copy could, through /proc/<pid>/exe.
    chmodSync(first.path, 0);
    const second = await s.lease();
    expect(second.sealed).toBe(true);
    // (The old copy is closed, so the new one may get its descriptor number.)
    expect(statSync(second.path).mode & 0o7777).toBe(0o755);
    expect(spawnSync(second.path, [], { encoding: 'utf8' }).stdout).toBe('fresh\n');
    expect(errors.map((e) => e.message)).toEqual([expect.stringMatching(/mode or owner changed/)]);
    second.release();
  });

  it('shares one copy between leases and closes it once idle', async () => {
    vi.useFakeTimers();
    const bin = join(dir, 'idle');
    script(bin, 'one');
    const s = new SealedBinary(bin, undefined, 1_000);
    const a = await s.lease();
    const b = await s.lease();
    expect(b.path).toBe(a.path);
    a.release();
    a.release(); // a second release of one lease counts once
    vi.advanceTimersByTime(5_000);
    expect(existsSync(b.path)).toBe(true); // b still holds it
    b.release();
    vi.advanceTimersByTime(999);
    expect(existsSync(b.path)).toBe(true);
    vi.advanceTimersByTime(1);
    expect(existsSync(b.path)).toBe(false);
    // The next lease makes a new copy.
    const c = await s.lease();
    expect(execFileSync(c.path, { encoding: 'utf8' })).toBe('one\n');
    c.release();
  });

  it('copies a binary changed on disk again and closes the old copy with its last lease', async () => {
    const bin = join(dir, 'changed');
    script(bin, 'old');
    const s = new SealedBinary(bin);
    const old = await s.lease();
    script(bin, 'newer');
    utimesSync(bin, new Date(), new Date(Date.now() + 10_000));
    const next = await s.lease();
    expect(next.path).not.toBe(old.path);
    expect(execFileSync(next.path, { encoding: 'utf8' })).toBe('newer\n');
    expect(execFileSync(old.path, { encoding: 'utf8' })).toBe('old\n');
    const oldPath = old.path;
    old.release();
    expect(existsSync(oldPath)).toBe(false);
    next.release();
  });

  it('leases the binary itself when there is nothing to copy', async () => {
    const errors: Error[] = [];
    const missing = new SealedBinary(join(dir, 'missing'), (e) => errors.push(e));
    expect(await missing.lease()).toMatchObject({ path: join(dir, 'missing'), sealed: false });
    // A directory: the copy fails, the caller is told, and the path is leased as it is.
    const notFile = new SealedBinary(dir, (e) => errors.push(e));
    expect(await notFile.lease()).toMatchObject({ path: dir, sealed: false });
    expect(errors.map((e) => (e as NodeJS.ErrnoException).code)).toEqual(['EINVAL']);
  });
});
