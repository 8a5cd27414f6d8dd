import { errors } from '@berth/api';

/** One /etc/passwd entry. */
export interface PasswdEntry {
  name: string;
  uid: number;
  gid: number;
  home: string;
}

/** One /etc/group entry. */
export interface GroupEntry {
  name: string;
  gid: number;
  members: string[];
}

/** The resolved identity of a process (OCI process.user). */
export interface ResolvedUser {
  uid: number;
  gid: number;
  additionalGids: number[];
  /** Home directory when the user is in /etc/passwd (HOME default). */
  home?: string;
}

const isId = (s: string) => /^\d+$/.test(s);

/** Parses /etc/passwd text; malformed lines are skipped as libc does. */
export function parsePasswd(text: string): PasswdEntry[] {
  const out: PasswdEntry[] = [];
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const f = line.split(':');
    if (f.length < 7 || !f[0] || !isId(f[2] ?? '') || !isId(f[3] ?? '')) continue;
    out.push({ name: f[0], uid: Number(f[2]), gid: Number(f[3]), home: f[5] ?? '/' });
  }
  return out;
}

/** Parses /etc/group text; malformed lines are skipped. */
export function parseGroup(text: string): GroupEntry[] {
  const out: GroupEntry[] = [];
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const f = line.split(':');
    if (f.length < 4 || !f[0] || !isId(f[2] ?? '')) continue;
    out.push({
      name: f[0],
      gid: Number(f[2]),
      members: (f[3] ?? '').split(',').filter((m) => m.length > 0),
    });
  }
  return out;
}

/**
 * Resolves `user[:group]` (names or numeric ids) the way docker and containerd do: a name must
 * exist in the image's /etc/passwd (or /etc/group); a numeric uid absent from passwd runs with gid
 * 0; supplementary groups are those listing the user as a member.
 */
export function resolveUser(
  spec: string,
  passwd: PasswdEntry[],
  group: GroupEntry[],
  where = 'the image',
): ResolvedUser {
  const [userPart = '', groupPart, ...rest] = spec.split(':');
  if (rest.length > 0 || (spec.length > 0 && userPart === '')) {
    throw errors.invalid(`invalid user "${spec}": expected user[:group]`);
  }
  let entry: PasswdEntry | undefined;
  let uid = 0;
  if (userPart === '') {
    entry = passwd.find((p) => p.uid === 0);
  } else if (isId(userPart)) {
    uid = Number(userPart);
    entry = passwd.find((p) => p.uid === uid);
  } else {
    entry = passwd.find((p) => p.name === userPart);
    if (!entry) throw errors.invalid(`user "${userPart}" not found in /etc/passwd of ${where}`);
  }
  if (entry) uid = entry.uid;
  let gid = entry?.gid ?? 0;
  if (groupPart !== undefined) {
    if (groupPart === '') throw errors.invalid(`invalid user "${spec}": empty group`);
    if (isId(groupPart)) gid = Number(groupPart);
    else {
      const g = group.find((x) => x.name === groupPart);
      if (!g) throw errors.invalid(`group "${groupPart}" not found in /etc/group of ${where}`);
      gid = g.gid;
    }
  }
  const additional = entry
    ? group.filter((g) => g.members.includes(entry.name) && g.gid !== gid).map((g) => g.gid)
    : [];
  const out: ResolvedUser = { uid, gid, additionalGids: [...new Set(additional)] };
  if (entry) out.home = entry.home;
  return out;
}
