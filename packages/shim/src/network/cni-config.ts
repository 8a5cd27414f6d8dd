import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { BerthError, Code } from '@berth/api';
import { z } from 'zod';

/** File endings libcni reads from a CNI configuration directory. */
const CONF_EXTENSIONS = ['.conflist', '.conf', '.json'] as const;

/** One plugin entry of a network configuration list: `type` names the binary, the rest is its own. */
export const CniPluginConf = z.looseObject({
  type: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]*$/, 'a plugin type is a plain binary name'),
  capabilities: z.record(z.string(), z.boolean()).optional(),
});
export type CniPluginConf = z.infer<typeof CniPluginConf>;

/** A CNI network configuration list (`.conflist`), as the CNI spec defines it. */
export const CniConfList = z.looseObject({
  cniVersion: z.string().min(1),
  name: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]*$/, 'a network name is [A-Za-z0-9_.-]'),
  disableCheck: z.boolean().optional(),
  plugins: z.array(CniPluginConf).min(1),
});
export type CniConfList = z.infer<typeof CniConfList>;

/** A loaded network: its list and the file it came from. */
export interface CniNetwork {
  file: string;
  conf: CniConfList;
}

/** The configuration files of a directory in the order libcni picks them (lexical by name). */
export async function confFiles(confDir: string): Promise<string[]> {
  let names: string[];
  try {
    names = await readdir(confDir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  return names
    .filter((n) => !n.startsWith('.') && CONF_EXTENSIONS.some((ext) => n.endsWith(ext)))
    .sort()
    .map((n) => join(confDir, n));
}

/**
 * Reads one configuration file. A `.conf`/`.json` holding a single plugin becomes a one-plugin list
 * (as libcni's ConfListFromConf does). Unreadable JSON or a wrong shape is INVALID_ARGUMENT naming
 * the file and the field.
 */
export async function loadConfFile(file: string): Promise<CniNetwork> {
  const text = await readFile(file, 'utf8');
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new BerthError(
      Code.INVALID_ARGUMENT,
      `CNI config "${file}" is not JSON: ${(err as Error).message}`,
    );
  }
  if (raw && typeof raw === 'object' && !Array.isArray(raw) && !('plugins' in raw) && 'type' in raw) {
    const { cniVersion, name, ...plugin } = raw as Record<string, unknown>;
    raw = { cniVersion, name, plugins: [plugin] };
  }
  const parsed = CniConfList.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const field = issue?.path.length ? issue.path.join('.') : '(top level)';
    throw new BerthError(Code.INVALID_ARGUMENT, `CNI config "${file}": field ${field}: ${issue?.message}`);
  }
  return { file, conf: parsed.data };
}

/** The subnets a plugin's IPAM section hands out from (host-local `ranges` or legacy `subnet`). */
export function subnetsOf(plugin: CniPluginConf): string[] {
  const ipam = plugin.ipam as { subnet?: unknown; ranges?: unknown } | undefined;
  if (!ipam || typeof ipam !== 'object') return [];
  const out: string[] = [];
  if (typeof ipam.subnet === 'string') out.push(ipam.subnet);
  if (Array.isArray(ipam.ranges)) {
    for (const set of ipam.ranges) {
      if (!Array.isArray(set)) continue;
      for (const r of set) if (r && typeof r.subnet === 'string') out.push(r.subnet);
    }
  }
  return out;
}
