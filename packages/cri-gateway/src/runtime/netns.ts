import { execFile } from 'node:child_process';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { BerthError, Code } from '@berth/api';
import type { PodNetwork, PodNetworkResult } from './ports.js';

const run = promisify(execFile);

/** Pod keys become file names: keep them to safe names. */
const KEY = /^[a-z0-9][a-z0-9-]{0,63}$/;

function pathOf(dir: string, podKey: string): string {
  if (!KEY.test(podKey)) throw new BerthError(Code.INVALID_ARGUMENT, `invalid pod network key "${podKey}"`);
  return join(dir, podKey);
}

/** True when `path` is a mount point in this mount namespace (a pinned network namespace is one). */
async function mounted(path: string): Promise<boolean> {
  const mounts = await readFile('/proc/self/mountinfo', 'utf8');
  return mounts.split('\n').some((l) => l.split(' ')[4] === path);
}

/**
 * A pod network of loopback only: a new network namespace pinned by a bind mount at
 * `<dir>/<podKey>` (as `ip netns add` does), with `lo` up and no address. It keeps a pod's
 * containers together on localhost until a CNI implementation gives pods addresses.
 */
export class LoopbackNetwork implements PodNetwork {
  constructor(private readonly dir: string) {}

  async setup(podKey: string): Promise<PodNetworkResult> {
    const path = pathOf(this.dir, podKey);
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    await writeFile(path, '', { flag: 'wx', mode: 0o600 }).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'EEXIST') {
        throw new BerthError(Code.ALREADY_EXISTS, `pod network namespace ${path} already exists`);
      }
      throw err;
    });
    try {
      // util-linux unshare pins the new namespace on the file by a bind mount, then exits.
      await run('unshare', [`--net=${path}`, 'true']);
      await run('nsenter', [`--net=${path}`, 'ip', 'link', 'set', 'lo', 'up']);
    } catch (err) {
      await this.teardown(podKey).catch(() => undefined);
      throw new BerthError(
        Code.INTERNAL,
        `setting up the network namespace of pod network ${podKey}: ${(err as Error).message}`,
        { cause: err },
      );
    }
    return { netnsPath: path };
  }

  async list(): Promise<string[]> {
    try {
      return (await readdir(this.dir)).filter((k) => KEY.test(k));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
  }

  async teardown(podKey: string): Promise<void> {
    const path = pathOf(this.dir, podKey);
    if (await mounted(path)) await run('umount', [path]);
    await rm(path, { force: true });
  }
}
