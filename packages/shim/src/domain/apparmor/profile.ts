import { BerthError, Code } from '@berth/api';

/*
 * berth's default AppArmor profile, in the spirit of Docker's docker-default and containerd's
 * cri-containerd.apparmor.d: a container keeps everything a process normally has (files, network,
 * capabilities its capability set grants) and loses what reaches the host through a shared kernel
 * interface: writes to /proc's host-wide files and to /sys, mounts, and ptrace or signals across
 * the container's boundary. Capabilities and seccomp do the rest.
 *
 * AppArmor globs cannot say "any name but X", so the helpers below spell it as an alternation of
 * patterns that together match every path component except X (see otherThan).
 */

/**
 * Glob alternatives that match every non-empty path component not starting with `prefix`: a
 * component differing at some position i (the first i characters of `prefix`, then another
 * character), or a proper prefix of it.
 */
export function notStartingWith(prefix: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < prefix.length; i++) {
    out.push(`${prefix.slice(0, i)}[^${prefix[i]}]*`);
    if (i > 0) out.push(prefix.slice(0, i));
  }
  return out;
}

/** Glob alternatives that match every non-empty path component other than `word`. */
export function otherThan(word: string): string[] {
  return [...notStartingWith(word), `${word}?*`];
}

const alt = (parts: string[]) => `{${parts.join(',')}}`;

/**
 * The text of berth's default profile under `name`, for `apparmor_parser`. Self-contained: it
 * includes nothing from /etc/apparmor.d, so it loads the same wherever the parser is installed.
 */
export function defaultProfileText(name: string): string {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(name)) {
    throw new BerthError(Code.INVALID_ARGUMENT, `"${name}" is not a name for berth's AppArmor profile`);
  }
  // A /proc entry whose name starts with 1-9 is a process (the container's own, its pid
  // namespace); /proc/self and /proc/thread-self are links to one and are checked as it. Of the
  // rest, /proc/sys has rules of its own.
  const procHostWide = alt(['[^1-9s]*', ...otherThan('sys').filter((p) => p.startsWith('s'))]);
  return `# berth's default AppArmor profile for containers, written and loaded by berth's shim.
# Generated: edits are overwritten the next time the shim loads it.

profile ${name} flags=(attach_disconnected,mediate_deleted) {
  # What any process has: files, the network, the capabilities of its capability set.
  file,
  network,
  capability,

  # Mounts change what the container sees of the host's files, masked paths included.
  deny mount,
  deny remount,
  deny umount,
  deny pivot_root,

  # /proc: the container's processes stay writable; host-wide files and directories do not.
  deny /proc/* w,
  deny /proc/${procHostWide}/** w,
  deny /proc/sys/${alt(otherThan('kernel'))}/** w,
  # In /proc/sys/kernel only the shm* settings of the container's own IPC namespace.
  deny /proc/sys/kernel/${alt(notStartingWith('shm'))} w,
  deny /proc/sys/kernel/*/** w,
  deny /proc/sysrq-trigger rwklx,
  deny /proc/kcore rwklx,
  deny /proc/kmsg rwklx,

  # /sys is the host's: read-only, except the container's cgroup (/sys/fs/cgroup).
  deny /sys/${alt(otherThan('fs'))}/** wklx,
  deny /sys/fs/${alt(otherThan('cgroup'))}/** wklx,
  # Readable elsewhere, these are not: firmware tables, energy counters (a side channel), LSM state.
  deny /sys/firmware/** rwklx,
  deny /sys/devices/virtual/powercap/** rwklx,
  deny /sys/kernel/security/** rwklx,

  # Signals and ptrace only among the container's processes; the host (unconfined: runc, conmon,
  # the shim, an administrator) may still signal them.
  signal (receive) peer=unconfined,
  signal (send,receive) peer=${name},
  ptrace (trace,read,tracedby,readby) peer=${name},
}
`;
}
