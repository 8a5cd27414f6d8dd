import type { BigIntStats, Dirent } from 'node:fs';
import { lstat, readdir, realpath, stat } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { type DeviceMapping, errors } from '@berth/api';

/** One entry of an OCI spec's linux.devices: a device node runc makes in the container's /dev. */
export interface OciDevice {
  path: string;
  type: 'c' | 'b';
  major: number;
  minor: number;
  fileMode: number;
  uid: number;
  gid: number;
}

/**
 * Directories of /dev that hold no device to copy: mounts of their own (pts, shm, mqueue), the
 * process's fds, and LXC/LXD/udev internals; as containerd's HostDevices skips them.
 */
const SKIPPED_DIRS = new Set(['pts', 'shm', 'fd', 'mqueue', '.lxc', '.lxd-mounts', '.udev']);

const S_IFMT = 0o170000n;
const S_IFCHR = 0o020000n;
const S_IFBLK = 0o060000n;

/** Linux's major of a dev_t (glibc's gnu_dev_major). */
function major(dev: bigint): number {
  return Number(((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn));
}

/** Linux's minor of a dev_t (glibc's gnu_dev_minor). */
function minor(dev: bigint): number {
  return Number((dev & 0xffn) | ((dev >> 12n) & ~0xffn));
}

const gone = (err: unknown) => (err as NodeJS.ErrnoException).code === 'ENOENT';

/**
 * Every char and block device node under `root` (the host's /dev), recursively, as OCI
 * linux.devices entries with the node's own type, numbers, mode and owner: what a privileged
 * container gets, as containerd's WithHostDevices gives it. Symlinks, FIFOs, sockets and regular
 * files are not devices; /dev/console is the runtime's own; a node removed during the walk is
 * skipped. Walked afresh on each call: devices come and go (USB, loop, device-mapper), so a cached
 * list would hand a container a node that no longer exists, or miss a new one.
 */
export function hostDevices(root = '/dev'): Promise<OciDevice[]> {
  return walk(root, true);
}

async function walk(dir: string, top: boolean): Promise<OciDevice[]> {
  let entries: Dirent[];
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch (err) {
    // A directory removed while walked (a device's folder unplugged) holds nothing now.
    if (gone(err) && !top) return [];
    throw errors.internal(`cannot list host devices in ${dir}: ${(err as Error).message}`, err);
  }
  // Sorted by name, as Go's os.ReadDir: the same /dev gives the same spec.
  entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const found = await Promise.all(
    entries.map(async (e): Promise<OciDevice[]> => {
      const path = join(dir, e.name);
      if (e.isDirectory()) return SKIPPED_DIRS.has(e.name) ? [] : walk(path, false);
      if (e.name === 'console' || !(e.isCharacterDevice() || e.isBlockDevice())) return [];
      const dev = await deviceAt(path);
      return dev ? [dev] : [];
    }),
  );
  return found.flat();
}

/** The device node at `path` (not followed if a symlink); undefined when gone or not a device. */
export async function deviceAt(path: string): Promise<OciDevice | undefined> {
  let st: BigIntStats;
  try {
    st = await lstat(path, { bigint: true });
  } catch (err) {
    if (gone(err)) return undefined;
    throw errors.internal(`cannot stat host device ${path}: ${(err as Error).message}`, err);
  }
  const fmt = st.mode & S_IFMT;
  if (fmt !== S_IFCHR && fmt !== S_IFBLK) return undefined;
  return {
    path,
    type: fmt === S_IFCHR ? 'c' : 'b',
    major: major(st.rdev),
    minor: minor(st.rdev),
    fileMode: Number(st.mode & 0o7777n),
    uid: Number(st.uid),
    gid: Number(st.gid),
  };
}

/**
 * Adds `devices` to a spec's linux.devices after its own; a path the spec already lists keeps
 * the spec's entry (a device the caller asked for by name wins over the host's copy).
 */
export function addDevices(spec: Record<string, unknown>, devices: readonly OciDevice[]): void {
  const linux = (spec.linux ?? {}) as Record<string, unknown>;
  spec.linux = linux;
  const own = Array.isArray(linux.devices) ? (linux.devices as { path?: unknown }[]) : [];
  const listed = new Set(own.map((d) => d.path));
  linux.devices = [...own, ...devices.filter((d) => !listed.has(d.path))];
}

/**
 * Adds the devices a container is given by path (CRI devices, from the kubelet's device plugins):
 * each host node, or each node under a host directory (at the same place below the container
 * path), to linux.devices with this node's type, numbers, mode and owner, and a device cgroup rule
 * allowing it with the mapping's permissions, as containerd's WithDevices. A host path that is
 * neither a device nor a directory holding one is FAILED_PRECONDITION naming it.
 */
export async function addMappedDevices(
  spec: Record<string, unknown>,
  mappings: readonly DeviceMapping[],
): Promise<void> {
  const devices: OciDevice[] = [];
  const rules: Record<string, unknown>[] = [];
  for (const m of mappings) {
    let found: OciDevice[];
    let st: Awaited<ReturnType<typeof stat>>;
    try {
      // A symlink (/dev/disk/by-id/..., a plugin's alias) stands for the node it names.
      st = await stat(m.hostPath);
    } catch (err) {
      throw errors.precondition(`device ${m.hostPath}: ${(err as Error).message}`);
    }
    if (st.isDirectory()) {
      found = (await walk(m.hostPath, false)).map((d) => ({
        ...d,
        path: join(m.containerPath, relative(m.hostPath, d.path)),
      }));
    } else {
      const d = await deviceAt(await realpath(m.hostPath));
      found = d ? [{ ...d, path: m.containerPath }] : [];
    }
    if (found.length === 0) {
      throw errors.precondition(`device ${m.hostPath} is not a device node on this node`);
    }
    for (const d of found) {
      devices.push(d);
      rules.push({ allow: true, type: d.type, major: d.major, minor: d.minor, access: m.permissions });
    }
  }
  addDevices(spec, devices);
  const linux = spec.linux as Record<string, unknown>;
  const resources = (linux.resources ?? {}) as Record<string, unknown>;
  linux.resources = resources;
  resources.devices = [...(Array.isArray(resources.devices) ? resources.devices : []), ...rules];
}
