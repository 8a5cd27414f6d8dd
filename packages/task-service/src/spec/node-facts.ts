import {
  type AppArmorRequest,
  type CreateContainerRequest,
  effectiveAppArmor,
  type SeccompRequest,
  type ShimCapabilities,
} from '@berth/api';

/*
 * What the task-service leaves to the container's node. A replica of the task-service may run on
 * any machine, so it never reads a rootfs or a kernel: it stores the container's spec with
 *   - process.user: the numeric ids as given (0 for a name) and the requested supplemental
 *     groups, until the node resolved `user` in the rootfs (its answer replaces them at task create);
 *   - process.capabilities: absent until the node resolved them from its bounding set;
 *   - HOME: absent from the env unless asked for; the node sets it from the rootfs's passwd;
 *   - linux.seccomp: absent; the node writes it for its architecture and kernel;
 *   - process.apparmorProfile: absent; the node sets it if its kernel has AppArmor;
 *   - linux.devices: absent; a privileged container gets the node's own /dev devices there;
 * and sends the node these requests (userOf, capabilitiesOf, seccompOf, apparmorOf,
 * hostDevicesOf) with every task create.
 */

/**
 * The seccomp filter a container's task is created with, which its node's shim resolves (for the
 * node's architecture and kernel and the spec's capabilities): none for a privileged container,
 * as Docker and containerd do, else the caller's choice, else berth's default profile.
 */
export function seccompOf(config: CreateContainerRequest): SeccompRequest {
  if (config.privileged) return { mode: 'unconfined' };
  return config.seccomp ?? { mode: 'default' };
}

/**
 * The AppArmor profile a container's task is created with, which its node's shim resolves (none
 * where the node's kernel has no AppArmor): the caller's choice, else berth's default profile,
 * except that a privileged container gets no default profile (a profile it names still applies),
 * as Docker and containerd's CRI do.
 */
export function apparmorOf(config: CreateContainerRequest): AppArmorRequest {
  return effectiveAppArmor(config.apparmor, config.privileged === true);
}

/**
 * The capabilities a container's node grants it from its own bounding set: all of them when
 * privileged, else the default set with the container's additions and drops.
 */
export function capabilitiesOf(config: CreateContainerRequest): ShimCapabilities {
  if (config.privileged) return { mode: 'all' };
  return { mode: 'default', add: config.capAdd ?? [], drop: config.capDrop ?? [] };
}

const isId = (s: string) => /^\d+$/.test(s);

/**
 * process.user as far as it is known without the rootfs: numeric ids as given (a name, or a
 * group the node takes from passwd, counts as 0) and the requested supplemental groups. The
 * node's resolution of the user string replaces uid and gid and adds the user's groups.
 */
export function provisionalUser(
  user: string,
  additionalGids: readonly number[] = [],
): { uid: number; gid: number; additionalGids?: number[] } {
  const [u = '', g = ''] = user.split(':');
  const gids = [...new Set(additionalGids)];
  return {
    uid: isId(u) ? Number(u) : 0,
    gid: isId(g) ? Number(g) : 0,
    ...(gids.length ? { additionalGids: gids } : {}),
  };
}

/**
 * Whether a container's node adds its own /dev device nodes to the spec (ShimCreateRequest
 * hostDevices): a privileged container sees the host's devices, as containerd's CRI gives them
 * (WithHostDevices, beside the device cgroup allowing all that linuxResources writes).
 */
export function hostDevicesOf(config: CreateContainerRequest): boolean {
  return config.privileged === true;
}
