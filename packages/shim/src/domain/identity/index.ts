import type { ShimCapabilities, ShimResolvedProcess } from '@berth/api';
import { nodeCapabilities, resolveCapabilities } from './capabilities.js';
import { readRootfsFile } from './rootfs-file.js';
import { parseGroup, parsePasswd, resolveUser } from './user.js';

export * from './capabilities.js';
export * from './rootfs-file.js';
export * from './user.js';

type Obj = Record<string, unknown>;

/**
 * Sets process.capabilities (bounding, effective, permitted) of a spec from this node's
 * bounding set. Call it before seccomp, whose rules are conditioned on the bounding set.
 */
export function applyCapabilities(spec: Obj, req: ShimCapabilities, nodeId: string): string[] {
  const caps = resolveCapabilities(req, nodeCapabilities(), nodeId);
  const proc = (spec.process as Obj | undefined) ?? {};
  spec.process = proc;
  proc.capabilities = { bounding: [...caps], effective: [...caps], permitted: [...caps] };
  return caps;
}

/** Where a user is resolved: the mounted rootfs, and the task named in errors. */
export interface UserContext {
  rootfs: string;
  task: string;
  /** Set HOME from passwd when the env has none (a task's process; an exec keeps its env). */
  home: boolean;
}

/**
 * Resolves `user[:group]` against the rootfs's /etc/passwd and /etc/group (read without leaving
 * the rootfs) into process.user: the primary group, then the user's groups, then the
 * additionalGids already there (CRI supplemental groups), each once. Unknown names are
 * INVALID_ARGUMENT naming the user and the task.
 */
export function applyUser(proc: Obj, user: string, ctx: UserContext): ShimResolvedProcess['user'] {
  const passwdText = readRootfsFile(ctx.rootfs, '/etc/passwd');
  const groupText = readRootfsFile(ctx.rootfs, '/etc/group');
  const passwd = parsePasswd(passwdText ?? '');
  const group = parseGroup(groupText ?? '');
  const u = resolveUser(user, passwd, group, `the image of container "${ctx.task}"`);
  const given = (proc.user as { additionalGids?: unknown } | undefined)?.additionalGids;
  const extra = Array.isArray(given) ? given.filter((g): g is number => typeof g === 'number') : [];
  // The primary group leads the supplementary ones, as containerd (since 1.6.18) and docker set
  // them: a process that changes its gid (setgid, newgrp) keeps it, so a file whose group
  // permissions deny that group stays denied (CVE-2023-25173).
  const additionalGids = [...new Set([u.gid, ...u.additionalGids, ...extra])];
  const out = { uid: u.uid, gid: u.gid, additionalGids };
  proc.user = out;
  if (ctx.home) {
    const env = Array.isArray(proc.env) ? (proc.env as string[]) : [];
    if (!env.some((e) => e.startsWith('HOME='))) env.push(`HOME=${u.home ?? '/'}`);
    proc.env = env;
  }
  return out;
}
