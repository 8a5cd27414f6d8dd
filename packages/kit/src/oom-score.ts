import { readFileSync } from 'node:fs';

// An OOM score below a process's own needs CAP_SYS_RESOURCE to set (proc(5)). Where a node's
// services lack it (this project's kind of host: root without it), a container's lower score is
// raised to the service's own, as containerd's CRI does with restrict_oom_score_adj.

/** CAP_SYS_RESOURCE is bit 24 of the effective capability set. */
const CAP_SYS_RESOURCE = 24n;

function hasCapSysResource(): boolean {
  try {
    const m = /^CapEff:\s*([0-9a-f]+)$/m.exec(readFileSync('/proc/self/status', 'utf8'));
    return m?.[1] ? ((BigInt(`0x${m[1]}`) >> CAP_SYS_RESOURCE) & 1n) === 1n : false;
  } catch {
    return false;
  }
}

/** This process's own oom_score_adj. */
function ownOomScoreAdj(): number {
  try {
    return Number(readFileSync('/proc/self/oom_score_adj', 'utf8').trim()) || 0;
  } catch {
    return 0;
  }
}

/** `asked`, raised to this process's own score when it is lower and the process may not lower it. */
export function allowedOomScoreAdj(asked: number): number {
  const own = ownOomScoreAdj();
  return asked >= own || hasCapSysResource() ? asked : own;
}
