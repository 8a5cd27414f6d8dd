import { readFileSync } from 'node:fs';
import { CAPABILITIES, capabilityName, errors, type ShimCapabilities } from '@berth/api';

/** The default capability set of a container (containerd's defaultUnixCaps). */
export const DEFAULT_CAPS = [
  'CAP_CHOWN',
  'CAP_DAC_OVERRIDE',
  'CAP_FSETID',
  'CAP_FOWNER',
  'CAP_MKNOD',
  'CAP_NET_RAW',
  'CAP_SETGID',
  'CAP_SETUID',
  'CAP_SETFCAP',
  'CAP_SETPCAP',
  'CAP_NET_BIND_SERVICE',
  'CAP_SYS_CHROOT',
  'CAP_KILL',
  'CAP_AUDIT_WRITE',
] as const;

/** Capability names of a /proc/<pid>/status mask (CapBnd, CapEff...), in bit order. */
export function capsFromMask(hex: string): string[] {
  const mask = BigInt(`0x${hex.trim()}`);
  return CAPABILITIES.filter((_, bit) => (mask >> BigInt(bit)) & 1n);
}

let nodeCaps: string[] | undefined;
/**
 * The capabilities runc can grant on this node: the agent's bounding set (conmon and runc inherit
 * it). A node started without CAP_SYS_CHROOT in its bounding set, say, cannot give it to a container.
 */
export function nodeCapabilities(): string[] {
  if (!nodeCaps) {
    const m = /^CapBnd:\s*([0-9a-f]+)$/m.exec(readFileSync('/proc/self/status', 'utf8'));
    nodeCaps = m?.[1] ? capsFromMask(m[1]) : [...CAPABILITIES];
  }
  return nodeCaps;
}

/**
 * The capability set a request asks for, on a node that can grant `node`: every one of them
 * (`all`), or the default set the node has, plus additions, minus drops (`ALL` works on either
 * side, drops win last). An addition the node cannot grant is refused by name, rather than
 * failing later in runc.
 */
export function resolveCapabilities(
  req: ShimCapabilities,
  node: readonly string[],
  nodeId: string,
): string[] {
  if (req.mode === 'all') return [...node];
  const adds = req.add.map(capabilityName);
  const drops = req.drop.map(capabilityName);
  for (const c of adds) {
    if (c !== 'ALL' && !node.includes(c)) {
      throw errors.invalid(`capability "${c}" is not available on node "${nodeId}"`);
    }
  }
  let set = new Set<string>(adds.includes('ALL') ? node : DEFAULT_CAPS.filter((c) => node.includes(c)));
  for (const c of adds) if (c !== 'ALL') set.add(c);
  if (drops.includes('ALL')) set = new Set(adds.filter((c) => c !== 'ALL'));
  for (const c of drops) set.delete(c);
  return [...set];
}
