import { mkdir, readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { BerthError, Code, ShimBandwidth, ShimCniDns, ShimPodIdentity } from '@berth/api';
import { type HostLayout, podNetnsDir } from '@berth/kit';
import { z } from 'zod';
import { writeAtomic } from '../domain/files.js';
import { CniConfList } from './cni-config.js';

/** Pod ids become file names and CNI_CONTAINERID, which libcni limits to this alphabet. */
const POD_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;

/** Throws INVALID_ARGUMENT unless `id` is usable as a file name and a CNI container id. */
export function checkPodId(id: string): void {
  if (!POD_ID.test(id)) {
    throw new BerthError(
      Code.INVALID_ARGUMENT,
      `invalid podId "${id.slice(0, 80)}": use 1-128 of [A-Za-z0-9_.-], not starting with a symbol`,
    );
  }
}

/** Where the network module keeps its files (docs/layout.md, shim network section). */
export function networkPaths(layout: Pick<HostLayout, 'stateRoot' | 'runRoot'>) {
  return {
    /** Pinned network namespaces, one file per pod (tmpfs: gone with the namespaces on reboot). */
    netnsDir: podNetnsDir(layout.runRoot),
    /** One JSON record per pod; on the state root so a reboot still knows which leases to release. */
    stateDir: join(layout.stateRoot, 'network', 'pods'),
  };
}

/**
 * What is recorded for one pod: written as `netns` before its namespace is made (when the pod's
 * namespace is made ahead of its ADD: nothing to DEL yet), as `adding` before the first plugin runs
 * (so a crash mid-ADD leaves a record recovery can DEL), then `ready` with the CNI result.
 */
export const PodNetworkRecord = z.object({
  version: z.literal(1),
  podId: z.string(),
  phase: z.enum(['netns', 'adding', 'ready']),
  netnsPath: z.string(),
  ifname: z.string(),
  /**
   * The list ADD ran (the network's, less a portmap plugin skipped for a pod without port
   * mappings: see podChain), kept so DEL and CHECK run the same chain even if the conf dir changed since.
   */
  network: z.object({ file: z.string(), conf: CniConfList }),
  portMappings: z.array(
    z.object({
      hostPort: z.number(),
      containerPort: z.number(),
      protocol: z.enum(['tcp', 'udp', 'sctp']),
      hostIP: z.string().optional(),
    }),
  ),
  /**
   * The Kubernetes pod (its CNI_ARGS), `bandwidth` and `dns` capabilities the ADD ran with: DEL and
   * CHECK pass the same. Absent for a pod that is not a Kubernetes pod (or an older shim's record).
   */
  pod: ShimPodIdentity.optional(),
  bandwidth: ShimBandwidth.optional(),
  dns: ShimCniDns.optional(),
  result: z.record(z.string(), z.unknown()).optional(),
  /**
   * The namespace's `lo` was brought up when it was made (the addon's): the CNI loopback plugin's
   * ADD is skipped. Absent (unshare(1), an older shim's record): the plugin runs.
   */
  loopbackUp: z.boolean().optional(),
  createdAt: z.string(),
});
export type PodNetworkRecord = z.infer<typeof PodNetworkRecord>;

/** The per-pod records of one node, one JSON file each, replaced atomically. */
export class PodRecords {
  constructor(readonly dir: string) {}

  private file(podId: string): string {
    return join(this.dir, `${podId}.json`);
  }

  /** Writes a record whole (temp name + rename). */
  async put(rec: PodNetworkRecord): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    await writeAtomic(this.file(rec.podId), `${JSON.stringify(rec)}\n`);
  }

  /** The record of a pod, or undefined; a corrupt file is DATA_LOSS naming it. */
  async get(podId: string): Promise<PodNetworkRecord | undefined> {
    let text: string;
    try {
      text = await readFile(this.file(podId), 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
    const parsed = PodNetworkRecord.safeParse(safeJson(text));
    if (!parsed.success) {
      throw new BerthError(
        Code.DATA_LOSS,
        `network record "${this.file(podId)}" is unreadable: ${parsed.error.issues[0]?.message}`,
      );
    }
    return parsed.data;
  }

  /** Removes a record; a missing one is fine. */
  async delete(podId: string): Promise<void> {
    await rm(this.file(podId), { force: true });
  }

  /** Ids of every recorded pod. */
  async ids(): Promise<string[]> {
    try {
      return (await readdir(this.dir))
        .filter((n) => n.endsWith('.json') && !n.startsWith('.'))
        .map((n) => n.slice(0, -'.json'.length))
        .sort();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
  }
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
