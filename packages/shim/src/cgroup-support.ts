import { existsSync, readdirSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { BerthError, Code } from '@berth/api';
import { cgroupVersion, parseMountinfo, parseProcCgroup } from './runtime/cgroups.js';

/** What this node's cgroups can apply beyond the limits every node has. */
export interface CgroupSupport {
  /** The cgroup version runc uses here (a hybrid host is v1). */
  version: 1 | 2;
  /** Whether the kernel accounts swap: memory.memsw.* (v1) or memory.swap.max (v2) exist. */
  swapAccounting: boolean;
}

let support: Promise<CgroupSupport> | undefined;

/**
 * This node's cgroup support, found once (a failed look is not kept). Swap accounting is looked
 * for where containerd's CRI looks: the v1 memory hierarchy's root memory.memsw.limit_in_bytes;
 * on v2 memory.swap.max in this process's own cgroup (not in the root cgroup, which has none:
 * there in its first child that has one).
 */
export function hostCgroupSupport(): Promise<CgroupSupport> {
  support ??= (async (): Promise<CgroupSupport> => {
    const version = await cgroupVersion();
    if (version === 1) {
      const mounts = parseMountinfo(await readFile('/proc/self/mountinfo', 'utf8'));
      const memory = mounts.v1.find((m) => m.controllers.includes('memory'))?.mountPoint;
      return { version, swapAccounting: !!memory && existsSync(join(memory, 'memory.memsw.limit_in_bytes')) };
    }
    const own = parseProcCgroup(await readFile('/proc/self/cgroup', 'utf8')).get('') ?? '/';
    const dirs = [join('/sys/fs/cgroup', own)];
    if (own === '/') {
      for (const e of readdirSync('/sys/fs/cgroup', { withFileTypes: true })) {
        if (e.isDirectory()) dirs.push(join('/sys/fs/cgroup', e.name));
      }
    }
    return { version, swapAccounting: dirs.some((d) => existsSync(join(d, 'memory.swap.max'))) };
  })().catch((err: unknown) => {
    support = undefined;
    throw err;
  });
  return support;
}

/** The cgroup requests of a container that not every node can apply. */
export interface CgroupAsk {
  unified?: Record<string, string> | undefined;
  /** Memory plus swap limit (OCI memory.swap); 0 or absent asks for nothing. */
  swap?: number | undefined;
}

/** The asks of OCI linux.resources (a spec's, or a runc update's). */
export function cgroupAskOf(resources: unknown): CgroupAsk {
  if (!resources || typeof resources !== 'object') return {};
  const r = resources as { unified?: unknown; memory?: { swap?: unknown } };
  const ask: CgroupAsk = {};
  if (r.unified && typeof r.unified === 'object') ask.unified = r.unified as Record<string, string>;
  if (typeof r.memory?.swap === 'number') ask.swap = r.memory.swap;
  return ask;
}

/**
 * Refuses, FAILED_PRECONDITION naming the field (`fields`, in the caller's terms), what this node's
 * cgroups cannot apply. runc 1.1 refuses any `unified` on cgroup v1 ("cannot use unified on cgroup
 * v1") and fails writing memory.memsw.limit_in_bytes without swap accounting; both only when it
 * creates or updates the container, long after the request that asked: checked here first.
 */
export function checkCgroupSupport(
  ask: CgroupAsk,
  node: CgroupSupport,
  fields: { unified: string; swap: string },
): void {
  const keys = Object.keys(ask.unified ?? {});
  if (keys.length && node.version === 1) {
    throw new BerthError(
      Code.FAILED_PRECONDITION,
      `${fields.unified}: ${keys.map((k) => `"${k}"`).join(', ')} ` +
        `${keys.length > 1 ? 'are cgroup v2 unified resources' : 'is a cgroup v2 unified resource'}, ` +
        "but this node's cgroups are v1: runc cannot apply unified resources there",
    );
  }
  if (ask.swap !== undefined && ask.swap !== 0 && !node.swapAccounting) {
    const where = node.version === 1 ? 'no memory.memsw.limit_in_bytes' : 'no memory.swap.max';
    throw new BerthError(
      Code.FAILED_PRECONDITION,
      `${fields.swap}: a swap limit was asked for, but this node's kernel does not account swap ` +
        `(${where} in its cgroup v${node.version} memory controller; boot it with swapaccount=1)`,
    );
  }
}
