import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { BerthError, Code } from '@berth/api';

/** Times as seconds and nanoseconds (tar and PAX carry sub-second mtimes). */
export interface Timespec {
  sec: number;
  nsec: number;
}

/**
 * The berth_fs native addon (native/berth_fs.c): synchronous calls on directory descriptors.
 * Names are latin1 strings whose code units are raw path bytes. Errors carry `code` like Node's.
 */
export interface NativeFs {
  openRoot(path: string): number;
  resolveDir(rootFd: number, rel: string): number;
  close(fd: number): void;
  /** [mode, uid, gid, size, atimeS, atimeNs, mtimeS, mtimeNs, major, minor, blocks] or null. */
  lstatAt(dirFd: number, name: string): number[] | null;
  mkdirAt(dirFd: number, name: string, mode: number): void;
  removeAllAt(dirFd: number, name: string): void;
  createFileAt(dirFd: number, name: string): number;
  writeAll(fd: number, buf: Buffer, offset: number, length: number): void;
  finishFile(
    fd: number,
    uid: number,
    gid: number,
    mode: number,
    atimeS: number,
    atimeNs: number,
    mtimeS: number,
    mtimeNs: number,
    xattrs: [string, Buffer][] | undefined,
  ): void;
  setMetaAt(
    dirFd: number,
    name: string,
    uid: number,
    gid: number,
    mode: number,
    xattrs: [string, Buffer][] | undefined,
  ): void;
  setTimesAt(
    dirFd: number,
    name: string,
    atimeS: number,
    atimeNs: number,
    mtimeS: number,
    mtimeNs: number,
  ): void;
  mknodAt(dirFd: number, name: string, mode: number, major: number, minor: number): void;
  symlinkAt(target: string, dirFd: number, name: string): void;
  linkAt(oldDirFd: number, oldName: string, newDirFd: number, newName: string): void;
  setXattrAt(dirFd: number, name: string, key: string, value: Buffer): void;
  listXattrs(path: string): [string, Buffer][];
  /** [bytes in allocated blocks, distinct inodes] of a tree, symlinks not followed. */
  diskUsage(path: string): [number, number];
  /**
   * diskUsage on libuv's thread pool (the event loop keeps serving); a missing root rejects with
   * ENOENT instead of counting nothing.
   */
  diskUsageAsync(path: string): Promise<[number, number]>;
}

let loaded: NativeFs | undefined;

/**
 * Loads the addon built by `native/build.mjs` (copied into dist/native, or still in
 * native/build/Release when running from sources). Throws FAILED_PRECONDITION when it is missing.
 */
export function nativeFs(): NativeFs {
  if (loaded) return loaded;
  const candidates = [
    '../native/berth_fs.node',
    '../../dist/native/berth_fs.node',
    '../../native/build/Release/berth_fs.node',
  ].map((p) => fileURLToPath(new URL(p, import.meta.url)));
  const found = candidates.find((p) => existsSync(p));
  if (!found) {
    throw new BerthError(
      Code.FAILED_PRECONDITION,
      `the berth_fs native addon is not built (looked for ${candidates.join(', ')}); run the snapshot-service build`,
    );
  }
  loaded = createRequire(import.meta.url)(found) as NativeFs;
  return loaded;
}

/** The errno code of an error thrown by the addon or by Node's fs. */
export function errCode(err: unknown): string | undefined {
  return (err as { code?: string } | null)?.code;
}
