// Contracts of host devices a container is given by path (CRI ContainerConfig.devices, which the
// kubelet fills from device plugins). The node's shim resolves each path into OCI linux.devices
// and the device cgroup rule that lets the container use it.

import * as z from './lazy-zod.js';

/** Device cgroup access: each of r (read), w (write), m (mknod) at most once. */
export const DEVICE_PERMISSIONS = /^(?!.*(.).*\1)[rwm]{1,3}$/;

/** One host device (or a directory of them) made available in the container. */
export const DeviceMapping = z.object({
  /** The device node on the node, or a directory whose device nodes all go (recursively). */
  hostPath: z.string().startsWith('/', 'device host path must be absolute'),
  /** Where it appears in the container (a directory's nodes keep their path below it). */
  containerPath: z.string().startsWith('/', 'device container path must be absolute'),
  /** Cgroup access: some of r (read), w (write), m (mknod), as CRI and docker take them. */
  permissions: z.string().regex(DEVICE_PERMISSIONS, 'device permissions must be some of "rwm"'),
});
export type DeviceMapping = z.infer<typeof DeviceMapping>;
