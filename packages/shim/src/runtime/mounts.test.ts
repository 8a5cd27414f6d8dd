import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BerthError, Code } from '@berth/api';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  isMountPoint,
  mountAll,
  mountsUnder,
  nativeOverlayMounts,
  overlaySyscall,
  unmountAll,
} from './mounts.js';

let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'berth-mounts-'));
});
afterAll(async () => {
  await unmountAll(join(dir, 'target')).catch(() => undefined);
  await rm(dir, { recursive: true, force: true });
});

describe('overlaySyscall', () => {
  it('passes an overlay with its own options to mount(2), ro as a flag', () => {
    const m = { type: 'overlay', source: 'overlay', options: ['index=off', 'lowerdir=/a:/b', 'ro'] };
    expect(overlaySyscall(m)).toEqual({ flags: 1, data: 'index=off,lowerdir=/a:/b' });
  });

  it('leaves other types and generic mount options to mount(8)', () => {
    expect(overlaySyscall({ type: 'bind', source: '/x', options: ['rbind'] })).toBeUndefined();
    expect(
      overlaySyscall({ type: 'overlay', source: 'overlay', options: ['nosuid', 'lowerdir=/a'] }),
    ).toBeUndefined();
  });
});

describe('mountAll of an overlay through the addon', () => {
  it('mounts a real overlay, writes go to the upper dir, and unmounts', async () => {
    expect(nativeOverlayMounts()).toBe(true);
    const [lower, upper, work, target] = ['lower', 'upper', 'work', 'target'].map((d) => join(dir, d)) as [
      string,
      string,
      string,
      string,
    ];
    for (const d of [lower, upper, work, target]) await mkdir(d, { recursive: true });
    await writeFile(join(lower, 'from-lower'), 'low');
    await mountAll(
      [
        {
          type: 'overlay',
          source: 'overlay',
          options: ['index=off', `workdir=${work}`, `upperdir=${upper}`, `lowerdir=${lower}`],
        },
      ],
      target,
    );
    expect(await isMountPoint(target)).toBe(true);
    expect(await readFile(join(target, 'from-lower'), 'utf8')).toBe('low');
    await writeFile(join(target, 'new'), 'up');
    expect(await readFile(join(upper, 'new'), 'utf8')).toBe('up');
    await unmountAll(target);
    expect(await isMountPoint(target)).toBe(false);
  });

  it('fails FAILED_PRECONDITION naming the source and target when the kernel refuses', async () => {
    const target = join(dir, 'target2');
    await mkdir(target, { recursive: true });
    const err = await mountAll(
      [{ type: 'overlay', source: 'overlay', options: [`lowerdir=${join(dir, 'absent')}`] }],
      target,
    ).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BerthError);
    expect((err as BerthError).code).toBe(Code.FAILED_PRECONDITION);
    expect((err as BerthError).message).toMatch(
      /mounting the rootfs \(overlay overlay\) on .*target2 failed: /,
    );
    expect(await isMountPoint(target)).toBe(false);
  });
});

describe('unmountAll through the addon', () => {
  const mount = (...args: string[]) => execFileSync('mount', args);

  it('unmounts a mount and its submounts, deepest first, stacked ones included', async () => {
    expect(nativeOverlayMounts()).toBe(true);
    const target = join(dir, 'nested');
    await mkdir(target, { recursive: true });
    mount('-t', 'tmpfs', 'tmpfs', target);
    await mkdir(join(target, 'a', 'b'), { recursive: true });
    mount('-t', 'tmpfs', 'tmpfs', join(target, 'a'));
    await mkdir(join(target, 'a', 'b'), { recursive: true });
    mount('-t', 'tmpfs', 'tmpfs', join(target, 'a', 'b'));
    // Two mounts stacked on one point: the upper one must go first.
    mount('-t', 'tmpfs', 'tmpfs', join(target, 'a', 'b'));
    expect(await mountsUnder(target)).toEqual([
      join(target, 'a', 'b'),
      join(target, 'a', 'b'),
      join(target, 'a'),
      target,
    ]);
    await unmountAll(`${target}/`);
    expect(await mountsUnder(target)).toEqual([]);
    expect(await isMountPoint(target)).toBe(false);
  });

  it('unmounts what is under a path that is not itself a mount point, and leaves neighbours', async () => {
    const base = join(dir, 'plain');
    const neighbour = join(dir, 'plain-neighbour');
    await mkdir(join(base, 'sub'), { recursive: true });
    await mkdir(neighbour, { recursive: true });
    mount('-t', 'tmpfs', 'tmpfs', join(base, 'sub'));
    mount('-t', 'tmpfs', 'tmpfs', neighbour);
    try {
      await unmountAll(base);
      expect(await mountsUnder(base)).toEqual([]);
      // A sibling whose name starts with the path's is not under it.
      expect(await isMountPoint(neighbour)).toBe(true);
    } finally {
      await unmountAll(neighbour);
    }
  });

  it('is a no-op when nothing is mounted, the path absent included', async () => {
    await unmountAll(join(dir, 'never-mounted'));
    expect(await mountsUnder(join(dir, 'never-mounted'))).toEqual([]);
  });
});
