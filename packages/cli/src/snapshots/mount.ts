import { spawn } from 'node:child_process';
import { mkdir, stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import { BerthError, Code, type Mount } from '@berth/api';
import type { CliContext } from '../context.js';
import { getImage, snap, statSnapshot, topChainId } from './api.js';

/** Label on the view snapshot `berth mount` creates: the directory it is mounted on. */
export const MOUNT_TARGET_LABEL = 'berth.io/mount-target';

/** The key of the view snapshot behind `berth mount IMAGE DIR`. */
export function mountKey(dir: string): string {
  return `mount:${resolve(dir)}`;
}

/** The mount(8) arguments that mount `m` on `target`. */
export function mountArgs(m: Mount, target: string): string[] {
  if (m.type === 'bind') return ['--bind', '-o', m.options.join(','), m.source, target];
  return ['-t', m.type, '-o', m.options.join(','), m.source, target];
}

function run(cmd: string, args: string[]): Promise<{ code: number; stderr: string }> {
  return new Promise((res, rej) => {
    const p = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    p.stderr.on('data', (b: Buffer) => {
      stderr += b.toString();
    });
    p.on('error', rej);
    p.on('close', (code) => res({ code: code ?? 1, stderr: stderr.trim() }));
  });
}

function requireRoot(what: string): void {
  if (process.getuid?.() !== 0)
    throw new BerthError(Code.PERMISSION_DENIED, `${what} needs root (it calls mount(2))`);
}

/**
 * `berth mount IMAGE DIR`: a read-only view of the image's top chain, mounted on DIR (as
 * `ctr image mount`). The image must be unpacked on this node.
 */
export async function mountImage(ctx: CliContext, ref: string, dir: string): Promise<string> {
  requireRoot('berth mount');
  const target = resolve(dir);
  const st = await stat(target).catch(() => undefined);
  if (st && !st.isDirectory())
    throw new BerthError(Code.INVALID_ARGUMENT, `mount target "${target}" is not a directory`);
  const rec = await getImage(ctx, ref);
  const chainId = rec.chainId ?? topChainId(rec.config.rootfs.diff_ids);
  try {
    await statSnapshot(ctx, chainId);
  } catch (err) {
    if (err instanceof BerthError && err.code === Code.NOT_FOUND) {
      throw new BerthError(
        Code.FAILED_PRECONDITION,
        `image "${rec.name}" is not unpacked on this node: run 'berth image unpack ${ref}'`,
      );
    }
    throw err;
  }
  await mkdir(target, { recursive: true });
  const key = mountKey(target);
  const { mounts } = await snap(ctx, 'view', {
    key,
    parent: chainId,
    labels: { [MOUNT_TARGET_LABEL]: target, 'berth.io/image': rec.name },
  }).catch((err: unknown) => {
    if (err instanceof BerthError && err.code === Code.ALREADY_EXISTS) {
      throw new BerthError(
        Code.ALREADY_EXISTS,
        `${target} is already mounted by berth (snapshot "${key}"): run 'berth unmount ${target}' first`,
      );
    }
    throw err;
  });
  const m = mounts[0];
  const r = m ? await run('mount', mountArgs(m, target)) : { code: 1, stderr: 'no mounts returned' };
  if (r.code !== 0) {
    await snap(ctx, 'remove', { key }).catch(() => undefined);
    throw new BerthError(Code.INTERNAL, `mounting image "${rec.name}" on ${target} failed: ${r.stderr}`);
  }
  return target;
}

/** `berth unmount DIR`: unmounts DIR and removes the view snapshot `berth mount` made for it. */
export async function unmountImage(ctx: CliContext, dir: string): Promise<string> {
  requireRoot('berth unmount');
  const target = resolve(dir);
  const r = await run('umount', [target]);
  const notMounted = r.code !== 0 && /not mounted|no mount point/i.test(r.stderr);
  if (r.code !== 0 && !notMounted)
    throw new BerthError(Code.FAILED_PRECONDITION, `cannot unmount ${target}: ${r.stderr}`);
  try {
    await snap(ctx, 'remove', { key: mountKey(target) });
  } catch (err) {
    if (err instanceof BerthError && err.code === Code.NOT_FOUND && notMounted) {
      throw new BerthError(Code.NOT_FOUND, `nothing is mounted on ${target} by berth`);
    }
    if (!(err instanceof BerthError && err.code === Code.NOT_FOUND)) throw err;
  }
  return target;
}
