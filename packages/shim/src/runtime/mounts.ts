import { readFile } from 'node:fs/promises';
import { BerthError, Code, type Mount } from '@berth/api';
import { lastLine, runCommand } from './command.js';

/**
 * Mounts a rootfs description (containerd-style Mount[]) on target, in order. A `bind` mount is
 * passed to mount(8) as options only (`-o rbind,ro`), every other type with `-t`.
 */
export async function mountAll(mounts: Mount[], target: string): Promise<void> {
  for (const m of mounts) {
    const opts = m.options.filter((o) => o.length > 0);
    const args: string[] = [];
    if (m.type === 'bind' || m.type === 'rbind') {
      if (!opts.some((o) => o === 'bind' || o === 'rbind')) opts.unshift(m.type);
    } else {
      args.push('-t', m.type);
    }
    if (opts.length) args.push('-o', opts.join(','));
    args.push(m.source, target);
    const r = await runCommand('mount', args);
    if (r.code !== 0) {
      throw new BerthError(
        Code.FAILED_PRECONDITION,
        `mounting the rootfs (${m.type} ${m.source}) on ${target} failed: ${lastLine(r.stderr)}`,
      );
    }
  }
}

/** True when something is mounted exactly at path (per /proc/self/mountinfo). */
export async function isMountPoint(path: string): Promise<boolean> {
  const info = await readFile('/proc/self/mountinfo', 'utf8');
  for (const line of info.split('\n')) {
    const mp = line.split(' ')[4];
    if (mp !== undefined && unescapeMount(mp) === path) return true;
  }
  return false;
}

function unescapeMount(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(Number.parseInt(o, 8)));
}

/** Unmounts everything at and under path (recursively); nothing mounted is fine. */
export async function unmountAll(path: string): Promise<void> {
  while (await isMountPoint(path)) {
    const r = await runCommand('umount', ['-R', path]);
    if (r.code !== 0) {
      throw new BerthError(Code.INTERNAL, `unmounting ${path} failed: ${lastLine(r.stderr)}`);
    }
  }
}
