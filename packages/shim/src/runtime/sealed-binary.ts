import { closeSync, fstatSync, statSync } from 'node:fs';
import { optionalAddon } from './native-addon.js';

/** build/sealed.node (native/sealed.c); rejections carry the errno's name as `code`. */
interface SealedAddon {
  sealedCopy(path: string): Promise<number>;
}

const sealedAddon = optionalAddon<SealedAddon>('sealed');

/** How long a copy is kept once nothing uses it, ms: a burst of creates shares one. */
export const SEALED_IDLE_MS = 60_000;

/** A path to run the binary by, for as long as it is held; release() once it has been executed. */
export interface BinaryLease {
  path: string;
  /** True when `path` is the sealed copy (false: the binary itself, as without the copy). */
  sealed: boolean;
  release(): void;
}

interface Copy {
  /** The binary it was made from: device, inode, mtime and size. */
  file: string;
  ready: Promise<number | undefined>;
  fd?: number;
  users: number;
  retired: boolean;
  timer?: NodeJS.Timeout;
}

/**
 * A sealed in-memory copy (memfd) of an executable, run as /proc/<this pid>/fd/<n>. For runc:
 * runc 1.1's `runc init` re-executes itself from a private copy of its binary (a sealed memfd, or
 * a read-only bind mount of it as Debian's 1.1.5 does) unless /proc/self/exe already is a sealed
 * memfd (CVE-2019-5736: a container must not reach the host's binary), which costs every `runc
 * create` a second execve with its dynamic loading, and the copy or the mounts. From this copy,
 * made once per binary, runc init finds itself sealed and goes on, with the same protection: the
 * memfd cannot be written, grown, shrunk or unsealed (runc documents an admin's sealed memfd as
 * a supported way to skip its copy).
 *
 * The copy (the binary's size in shared memory, not in the shim's RSS) is made at the first lease
 * and closed once no lease has been held for `idleMs`; a binary changed on disk (a runc upgrade:
 * device, inode, mtime or size) gets a new copy at the next lease, the old one closed when its
 * last lease ends. Without the addon, or when the copy fails (`onError` told; tried again once
 * the failed copy has been idle `idleMs`), a lease is the binary's own path and runc copies
 * itself as before.
 */
export class SealedBinary {
  private copy: Copy | undefined;

  constructor(
    readonly binary: string,
    private readonly onError: (err: Error) => void = () => undefined,
    private readonly idleMs = SEALED_IDLE_MS,
  ) {}

  /** A path to execute the binary by, held until release(). */
  async lease(): Promise<BinaryLease> {
    const plain: BinaryLease = { path: this.binary, sealed: false, release: () => undefined };
    const addon = sealedAddon();
    // Inline: µs, on every create (as conmonSkipsLogSync's).
    const st = addon && statSync(this.binary, { throwIfNoEntry: false });
    if (!addon || !st) return plain;
    const file = `${st.dev}:${st.ino}:${st.mtimeMs}:${st.size}`;
    let copy = this.copy;
    // The seals stop writes, not chmod or chown: a root process of a container running from the
    // copy (runc init, before its exec) could take its exec bit away for every later create. A
    // copy whose mode or owner is not the one made is dropped for a new one.
    if (copy?.fd !== undefined && !pristine(copy.fd)) {
      this.onError(new Error(`the sealed copy of ${this.binary} had its mode or owner changed: made anew`));
      this.retire(copy);
      copy = undefined;
    }
    if (copy && copy.file !== file) {
      this.retire(copy);
      copy = undefined;
    }
    if (!copy) {
      const made: Copy = { file, users: 0, retired: false, ready: Promise.resolve(undefined) };
      made.ready = addon.sealedCopy(this.binary).then(
        (fd) => {
          // Retired while it was being made (the binary changed again) and never leased since.
          if (made.retired && made.users === 0) closeSync(fd);
          else made.fd = fd;
          return made.fd;
        },
        (err: Error) => {
          this.onError(err);
          return undefined;
        },
      );
      this.copy = copy = made;
    }
    copy.users++;
    clearTimeout(copy.timer);
    const fd = await copy.ready;
    let held = true;
    const release = () => {
      if (!held) return;
      held = false;
      this.release(copy);
    };
    if (fd === undefined) {
      release();
      return plain;
    }
    return { path: `/proc/${process.pid}/fd/${fd}`, sealed: true, release };
  }

  private release(copy: Copy): void {
    copy.users--;
    if (copy.users > 0) return;
    if (copy.retired) {
      this.close(copy);
      return;
    }
    copy.timer = setTimeout(() => {
      if (copy.users > 0) return;
      if (this.copy === copy) this.copy = undefined;
      this.close(copy);
    }, this.idleMs);
    copy.timer.unref();
  }

  private retire(copy: Copy): void {
    copy.retired = true;
    clearTimeout(copy.timer);
    if (this.copy === copy) this.copy = undefined;
    if (copy.users === 0) this.close(copy);
  }

  private close(copy: Copy): void {
    if (copy.fd === undefined) return;
    const fd = copy.fd;
    copy.fd = undefined;
    closeSync(fd);
  }
}

/** True while the copy behind `fd` is as made: mode 0755, owned by root (the shim). */
function pristine(fd: number): boolean {
  const st = fstatSync(fd);
  return (st.mode & 0o7777) === 0o755 && st.uid === process.geteuid?.() && st.gid === process.getegid?.();
}

const shared = new Map<string, SealedBinary>();

/**
 * The SealedBinary of one executable path, one per process (agents in one process share it);
 * `onError` of the first caller is the one told.
 */
export function sealedBinary(binary: string, onError?: (err: Error) => void): SealedBinary {
  let s = shared.get(binary);
  if (!s) {
    s = new SealedBinary(binary, onError);
    shared.set(binary, s);
  }
  return s;
}
