import { chmod, chown, lstat, mkdir, stat, unlink } from 'node:fs/promises';
import { connect } from 'node:net';
import { dirname, isAbsolute, sep } from 'node:path';
import { BerthError, Code } from '@berth/api';

/** Longest path a unix socket address can hold on Linux (sun_path is 108 bytes with the NUL). */
const MAX_SOCKET_PATH = 107;

/**
 * Mode of the CRI socket: only its owner (root) may connect. kubelet and crictl run as root, so
 * no group bit is needed; containerd's 0660 serves a group configured in its `[grpc] gid`, which
 * berth does not offer, and with root:root it would only open the runtime to members of group
 * root. docs/layout.md states the same mode (gateway.test.ts checks that they agree).
 */
export const SOCKET_MODE = 0o600;

/** Mode of a socket directory berth owns: only root may even look inside. */
export const SOCKET_DIR_MODE = 0o700;

/**
 * Makes the socket's directory safe and clears a stale socket so a new server can bind.
 * A directory under berth's run root is created (or tightened) to 0700; a directory elsewhere is
 * never chmod-ed (it may be shared) but must not be writable by others, who could swap the socket.
 * A socket that still answers belongs to a live server: refuse rather than steal it.
 */
export async function prepareSocketPath(socket: string, runRoot: string): Promise<void> {
  if (!isAbsolute(socket)) {
    throw new BerthError(Code.INVALID_ARGUMENT, `CRI socket path "${socket}" must be absolute`);
  }
  if (Buffer.byteLength(socket) > MAX_SOCKET_PATH) {
    throw new BerthError(
      Code.INVALID_ARGUMENT,
      `CRI socket path "${socket}" is longer than the ${MAX_SOCKET_PATH} bytes a unix socket allows`,
    );
  }
  const dir = dirname(socket);
  const ours = dir === runRoot || dir.startsWith(runRoot.endsWith(sep) ? runRoot : runRoot + sep);
  await mkdir(dir, { recursive: true, mode: SOCKET_DIR_MODE });
  const st = await stat(dir);
  const uid = process.getuid?.() ?? 0;
  if (ours) {
    if (st.uid !== uid) {
      throw new BerthError(
        Code.FAILED_PRECONDITION,
        `socket directory ${dir} is owned by uid ${st.uid}, not by berth (uid ${uid})`,
      );
    }
    if ((st.mode & 0o777) !== SOCKET_DIR_MODE) await chmod(dir, SOCKET_DIR_MODE);
  } else if (st.mode & 0o022) {
    throw new BerthError(
      Code.FAILED_PRECONDITION,
      `socket directory ${dir} is writable by other users (mode ${(st.mode & 0o777).toString(8)}); ` +
        'choose a directory only its owner can write',
    );
  }

  const existing = await lstat(socket).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return undefined;
    throw err;
  });
  if (!existing) return;
  if (!existing.isSocket()) {
    throw new BerthError(
      Code.FAILED_PRECONDITION,
      `${socket} exists and is not a socket; refusing to replace it`,
    );
  }
  if (await answers(socket)) {
    throw new BerthError(Code.ALREADY_EXISTS, `another process is already serving ${socket}`);
  }
  await unlink(socket);
}

/** Gives the bound socket its final mode and, when running as root, root ownership. */
export async function secureSocket(socket: string): Promise<void> {
  await chmod(socket, SOCKET_MODE);
  if (process.getuid?.() === 0) await chown(socket, 0, 0);
}

function answers(socket: string): Promise<boolean> {
  return new Promise((resolve) => {
    const c = connect(socket);
    c.once('connect', () => {
      c.destroy();
      resolve(true);
    });
    c.once('error', () => resolve(false));
  });
}
