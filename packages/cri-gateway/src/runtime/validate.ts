import { BerthError, Code } from '@berth/api';
import { type NamespaceOptions, NsMode } from './meta.js';

/** INVALID_ARGUMENT naming the field. */
export function invalid(field: string, why: string): BerthError {
  return new BerthError(Code.INVALID_ARGUMENT, `${field} ${why}`);
}

/** A string map from the proto (map<string,string>), checked. */
export function stringMap(v: unknown, field: string): Record<string, string> {
  if (v === undefined || v === null) return {};
  if (typeof v !== 'object' || Array.isArray(v)) throw invalid(field, 'must be a map of strings');
  const out: Record<string, string> = {};
  for (const [k, val] of Object.entries(v)) {
    if (typeof val !== 'string') throw invalid(`${field}["${k}"]`, 'must be a string');
    out[k] = val;
  }
  return out;
}

/** A list of strings from the proto, checked. */
export function stringList(v: unknown, field: string): string[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v) || v.some((s) => typeof s !== 'string'))
    throw invalid(field, 'must be a list of strings');
  return v as string[];
}

/** An object (a proto message) or undefined when unset. */
export function message(v: unknown, field: string): Record<string, unknown> | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'object' || Array.isArray(v)) throw invalid(field, 'must be a message');
  return v as Record<string, unknown>;
}

/** A proto int64 (grpc-js gives a decimal string) or int32 (a number) as a safe integer. */
export function int(v: unknown, field: string): number {
  if (v === undefined || v === null || v === '') return 0;
  const n = typeof v === 'string' ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isSafeInteger(n)) throw invalid(field, 'must be an integer');
  return n;
}

/** A non-empty string field. */
export function required(v: unknown, field: string): string {
  if (typeof v !== 'string' || v === '') throw invalid(field, 'is required');
  return v;
}

/** An absolute path without `..` components, or "" when unset. */
export function absPath(v: unknown, field: string): string {
  if (v === undefined || v === null || v === '') return '';
  if (typeof v !== 'string' || !v.startsWith('/'))
    throw invalid(field, `must be an absolute path, got "${String(v)}"`);
  if (v.split('/').includes('..') || v.includes('\0')) throw invalid(field, `must not contain "..": "${v}"`);
  return v;
}

/** A relative path inside a directory (no leading "/", no ".."), or "" when unset. */
export function relPath(v: unknown, field: string): string {
  if (v === undefined || v === null || v === '') return '';
  if (typeof v !== 'string' || v.startsWith('/') || v.split('/').includes('..') || v.includes('\0')) {
    throw invalid(field, `must be a relative path inside the pod's log directory, got "${String(v)}"`);
  }
  return v;
}

const MODES = new Set<string>(Object.values(NsMode));

/** CRI NamespaceOption, with the proto's defaults (POD) for an unset message. */
export function namespaceOptions(v: unknown, field: string): NamespaceOptions {
  const m = message(v, field) ?? {};
  const mode = (x: unknown, f: string): NsMode => {
    if (x === undefined || x === null) return NsMode.POD;
    if (typeof x === 'number') {
      const byNumber = [NsMode.POD, NsMode.CONTAINER, NsMode.NODE, NsMode.TARGET][x];
      if (byNumber) return byNumber;
    }
    if (typeof x === 'string' && MODES.has(x)) return x as NsMode;
    throw invalid(`${field}.${f}`, `is not a namespace mode: ${String(x)}`);
  };
  // A user namespace (mode POD) is not built yet; the kubelet sends mode NODE for ordinary pods.
  const userns = message(m.userns_options, `${field}.userns_options`);
  if (userns && (userns.mode === NsMode.POD || userns.mode === 0)) {
    throw new BerthError(
      Code.UNIMPLEMENTED,
      `CRI ${field}.userns_options mode POD (user namespaces) is not implemented by berth yet`,
    );
  }
  return {
    network: mode(m.network, 'network'),
    pid: mode(m.pid, 'pid'),
    ipc: mode(m.ipc, 'ipc'),
    target_id: typeof m.target_id === 'string' ? m.target_id : '',
  };
}

/**
 * The user of a security context (container or pod): `uid[:gid]` from run_as_user and
 * run_as_group, or run_as_username (containers only); undefined when it names none.
 */
export function runAsUser(sc: Record<string, unknown>, field: string): string | undefined {
  const uid = message(sc.run_as_user, `${field}.run_as_user`);
  const gid = message(sc.run_as_group, `${field}.run_as_group`);
  const name = typeof sc.run_as_username === 'string' ? sc.run_as_username : '';
  const user = uid ? String(int(uid.value, `${field}.run_as_user.value`)) : name;
  if (gid && !user) throw invalid(`${field}.run_as_group`, 'is set without run_as_user or run_as_username');
  if (user.includes(':')) throw invalid(`${field}.run_as_username`, `must not contain ":": "${user}"`);
  if (!user) return undefined;
  return gid ? `${user}:${int(gid.value, `${field}.run_as_group.value`)}` : user;
}

/**
 * The supplemental_groups of a security context: non-negative gids. berth adds the groups the
 * image's /etc/group gives the user (the Merge policy); Strict, which would leave them out, is
 * UNIMPLEMENTED (Status reports no supplemental_groups_policy feature, so a kubelet asks for it
 * only by mistake).
 */
export function supplementalGroups(sc: Record<string, unknown>, field: string): number[] {
  const policy = sc.supplemental_groups_policy;
  if (policy === 'Strict' || policy === 1) {
    throw new BerthError(
      Code.UNIMPLEMENTED,
      `CRI ${field}.supplemental_groups_policy: Strict is not implemented by berth yet (only Merge)`,
    );
  }
  return (Array.isArray(sc.supplemental_groups) ? sc.supplemental_groups : []).map(
    (g: unknown, i: number) => {
      const n = int(g, `${field}.supplemental_groups[${i}]`);
      if (n < 0) throw invalid(`${field}.supplemental_groups[${i}]`, `must not be negative: ${n}`);
      return n;
    },
  );
}
