import { lstat, readFile, readlink } from 'node:fs/promises';
import { join, posix } from 'node:path';
import type { Mount } from '@berth/api';

/**
 * Reads files of an image's rootfs straight from its snapshot layers, without mounting: the
 * layer directories are searched topmost first, overlay whiteouts (0/0 char devices, or `.wh.`
 * names) hide lower entries, and symlinks are followed inside the rootfs, never onto the host.
 */
export class LayeredRootfs {
  /** @param dirs layer directories, topmost first */
  constructor(readonly dirs: readonly string[]) {}

  /** Layer directories of snapshot mounts: an overlay's upperdir then lowerdirs, or a bind source. */
  static fromMounts(mounts: readonly Mount[]): LayeredRootfs {
    const dirs: string[] = [];
    for (const m of mounts) {
      if (m.type === 'bind' || m.type === 'rbind') dirs.push(m.source);
      else if (m.type === 'overlay') {
        const opt = (k: string) => m.options.find((o) => o.startsWith(`${k}=`))?.slice(k.length + 1);
        const upper = opt('upperdir');
        if (upper) dirs.push(upper);
        dirs.push(...(opt('lowerdir')?.split(':') ?? []));
      }
    }
    return new LayeredRootfs(dirs);
  }

  /** Resolves a path in the rootfs to the host path holding it, or undefined when absent. */
  async resolve(path: string, depth = 0): Promise<{ host: string; isDir: boolean } | undefined> {
    if (depth > 40) return undefined; // a symlink loop, as ELOOP
    const parts = posix.normalize(`/${path}`).split('/').filter(Boolean);
    let cur = '/';
    for (let i = 0; i < parts.length; i++) {
      const name = parts[i] as string;
      const logical = posix.join(cur, name);
      const hit = await this.entry(cur, name);
      if (!hit) return undefined;
      if (hit.kind === 'symlink') {
        const target = await readlink(hit.host);
        const next = posix.join(
          target.startsWith('/') ? target : posix.join(cur, target),
          ...parts.slice(i + 1),
        );
        return this.resolve(next, depth + 1);
      }
      if (i === parts.length - 1) return { host: hit.host, isDir: hit.kind === 'dir' };
      if (hit.kind !== 'dir') return undefined;
      cur = logical;
    }
    return { host: this.dirs[0] ?? '/', isDir: true };
  }

  /** Reads a (small) regular file of the rootfs, or undefined when it does not exist. */
  async readFile(path: string, maxBytes = 1 << 20): Promise<string | undefined> {
    const r = await this.resolve(path);
    if (!r || r.isDir) return undefined;
    const st = await lstat(r.host);
    if (st.size > maxBytes) return undefined;
    return readFile(r.host, 'utf8');
  }

  /** True when `cmd` names an executable in the rootfs: a path, or a name found along PATH. */
  async hasCommand(cmd: string, pathEnv: string, cwd = '/'): Promise<boolean> {
    const candidates = cmd.includes('/')
      ? [cmd.startsWith('/') ? cmd : posix.join(cwd, cmd)]
      : pathEnv
          .split(':')
          .filter(Boolean)
          .map((d) => posix.join(d, cmd));
    for (const c of candidates) {
      const r = await this.resolve(c);
      if (r && !r.isDir) {
        const st = await lstat(r.host);
        if (st.isFile() && (st.mode & 0o111) !== 0) return true;
      }
    }
    return false;
  }

  private readonly realDirs = new Map<string, Promise<boolean>>();

  /**
   * True when `dir` is a chain of real directories inside `layer`. A symlink on the way would make
   * the host resolve it (possibly out of the layer, onto the host's files); overlayfs does not
   * merge through it either, so such a layer has nothing under `dir`.
   */
  private realDir(layer: string, dir: string): Promise<boolean> {
    const key = `${layer}\0${dir}`;
    let hit = this.realDirs.get(key);
    if (!hit) {
      hit = (async () => {
        let cur = layer;
        for (const part of dir.split('/').filter(Boolean)) {
          cur = join(cur, part);
          const st = await lstat(cur).catch(() => undefined);
          if (!st?.isDirectory()) return false;
        }
        return true;
      })();
      this.realDirs.set(key, hit);
    }
    return hit;
  }

  private async entry(
    dir: string,
    name: string,
  ): Promise<{ host: string; kind: 'dir' | 'file' | 'symlink' } | undefined> {
    for (const layer of this.dirs) {
      if (!(await this.realDir(layer, dir))) continue;
      const host = join(layer, dir, name);
      const st = await lstat(host).catch(() => undefined);
      if (st) {
        if (st.isCharacterDevice() && st.rdev === 0) return undefined; // overlay whiteout
        return { host, kind: st.isSymbolicLink() ? 'symlink' : st.isDirectory() ? 'dir' : 'file' };
      }
      if (await lstat(join(layer, dir, `.wh.${name}`)).catch(() => undefined)) return undefined;
    }
    return undefined;
  }
}
