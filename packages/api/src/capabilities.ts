import { errors } from './errors.js';
import * as z from './lazy-zod.js';

/** Every Linux capability name berth knows, in kernel bit order (bit i of a CapBnd mask is entry i). */
export const CAPABILITIES = [
  'CAP_CHOWN',
  'CAP_DAC_OVERRIDE',
  'CAP_DAC_READ_SEARCH',
  'CAP_FOWNER',
  'CAP_FSETID',
  'CAP_KILL',
  'CAP_SETGID',
  'CAP_SETUID',
  'CAP_SETPCAP',
  'CAP_LINUX_IMMUTABLE',
  'CAP_NET_BIND_SERVICE',
  'CAP_NET_BROADCAST',
  'CAP_NET_ADMIN',
  'CAP_NET_RAW',
  'CAP_IPC_LOCK',
  'CAP_IPC_OWNER',
  'CAP_SYS_MODULE',
  'CAP_SYS_RAWIO',
  'CAP_SYS_CHROOT',
  'CAP_SYS_PTRACE',
  'CAP_SYS_PACCT',
  'CAP_SYS_ADMIN',
  'CAP_SYS_BOOT',
  'CAP_SYS_NICE',
  'CAP_SYS_RESOURCE',
  'CAP_SYS_TIME',
  'CAP_SYS_TTY_CONFIG',
  'CAP_MKNOD',
  'CAP_LEASE',
  'CAP_AUDIT_WRITE',
  'CAP_AUDIT_CONTROL',
  'CAP_SETFCAP',
  'CAP_MAC_OVERRIDE',
  'CAP_MAC_ADMIN',
  'CAP_SYSLOG',
  'CAP_WAKE_ALARM',
  'CAP_BLOCK_SUSPEND',
  'CAP_AUDIT_READ',
  'CAP_PERFMON',
  'CAP_BPF',
  'CAP_CHECKPOINT_RESTORE',
] as const;

/**
 * Normalizes a capability as users write it (`net_admin`, `CAP_NET_ADMIN`, `ALL`) to its
 * `CAP_` name or `ALL`; an unknown name is INVALID_ARGUMENT naming it. Which ones a node can
 * grant is the node's fact, checked by its shim.
 */
export function capabilityName(raw: string): string {
  const up = raw.toUpperCase();
  if (up === 'ALL') return 'ALL';
  const name = up.startsWith('CAP_') ? up : `CAP_${up}`;
  if (!(CAPABILITIES as readonly string[]).includes(name)) {
    throw errors.invalid(`unknown capability "${raw}"`);
  }
  return name;
}

/**
 * The capabilities of a container's process, resolved by the shim on the container's node from
 * that node's bounding set: `default` is containerd's default set (as far as the node has it)
 * plus `add` minus `drop` (names as capabilityName takes them, `ALL` on either side, drops win);
 * `all` is every capability the node can grant (a privileged container).
 */
export const ShimCapabilities = z.discriminatedUnion('mode', [
  z.object({
    mode: z.literal('default'),
    add: z.array(z.string()).default([]),
    drop: z.array(z.string()).default([]),
  }),
  z.object({ mode: z.literal('all') }),
]);
export type ShimCapabilities = z.infer<typeof ShimCapabilities>;

/** An OCI process.user: the ids a process runs with. */
export const ProcessUser = z.object({
  uid: z.number().int().min(0),
  gid: z.number().int().min(0),
  additionalGids: z.array(z.number().int().min(0)).optional(),
});
export type ProcessUser = z.infer<typeof ProcessUser>;

/**
 * What a shim resolved on its node for a process it created (the create reply): the user's ids
 * from the rootfs's /etc/passwd and /etc/group, and the capability set from the node's kernel.
 */
export const ShimResolvedProcess = z.object({
  user: ProcessUser,
  /** The bounding (= effective = permitted) set, when the shim resolved it. */
  capabilities: z.array(z.string()).optional(),
});
export type ShimResolvedProcess = z.infer<typeof ShimResolvedProcess>;
