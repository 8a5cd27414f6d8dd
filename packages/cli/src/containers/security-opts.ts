import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { type CreateContainerRequest, errors } from '@berth/api';
import { parseSeccompProfile, resolveProfile } from '@berth/shim/seccomp';

/** What `--security-opt` entries set on a create request. */
export type SecurityOpts = Pick<CreateContainerRequest, 'noNewPrivileges' | 'seccomp' | 'apparmor'>;

function flag(o: string, value: string): boolean {
  if (value === 'true') return true;
  if (value === 'false') return false;
  throw errors.invalid(`invalid --security-opt "${o}": expected true or false`);
}

/**
 * Reads a Docker-format seccomp profile here, on the user's machine (as docker does), so that it
 * reaches a container on any node; INVALID_ARGUMENT names the file and the problem.
 */
function profileFile(path: string, cwd: string): NonNullable<CreateContainerRequest['seccomp']> {
  const abs = resolve(cwd, path);
  let text: string;
  try {
    text = readFileSync(abs, 'utf8');
  } catch (err) {
    throw errors.invalid(`cannot read seccomp profile "${abs}": ${(err as Error).message}`);
  }
  const profile = parseSeccompProfile(text, `"${abs}"`);
  // Refuses what no node can run (a notify agent) now rather than at start; the facts of the
  // node (its architecture, kernel) and the container's capabilities are resolved there.
  resolveProfile(profile, { caps: [], arch: '', kernel: '' }, `"${abs}"`);
  return { mode: 'profile', profile, source: abs };
}

/** One `--security-opt` entry as key and value (`key=value` or `key:value`; no value: `key`). */
function splitOpt(o: string): { key: string | undefined; value: string | undefined } {
  const m = /^([a-z-]+)(?:[=:](.*))?$/s.exec(o);
  return { key: m?.[1], value: m?.[2] };
}

/** The seccomp profile files `--security-opt` entries name (as parseSecurityOpts reads them). */
export function profilePaths(opts: string[]): string[] {
  return opts.flatMap((o) => {
    const { key, value } = splitOpt(o);
    return key === 'seccomp' && value && value !== 'unconfined' && value !== 'builtin' ? [value] : [];
  });
}

/**
 * Parses docker's `--security-opt` entries berth supports: `no-new-privileges[=true|false]`
 * (also `:`), `seccomp=unconfined|builtin|<profile.json>` and `apparmor=unconfined|<profile>` (a
 * profile loaded on the container's node; without the option a container gets berth's default
 * profile where the node's kernel has AppArmor, unless privileged). Others are INVALID_ARGUMENT.
 */
export function parseSecurityOpts(opts: string[], cwd: string = process.cwd()): SecurityOpts {
  const out: SecurityOpts = {};
  for (const o of opts) {
    const { key, value } = splitOpt(o);
    if (key === 'no-new-privileges') {
      out.noNewPrivileges = value === undefined ? true : flag(o, value);
    } else if (key === 'seccomp') {
      if (!value)
        throw errors.invalid(`invalid --security-opt "${o}": seccomp needs a profile or unconfined`);
      if (value === 'unconfined') out.seccomp = { mode: 'unconfined' };
      else if (value === 'builtin') out.seccomp = { mode: 'default' };
      else out.seccomp = profileFile(value, cwd);
    } else if (key === 'apparmor') {
      if (!value)
        throw errors.invalid(`invalid --security-opt "${o}": apparmor needs a profile name or unconfined`);
      out.apparmor = value === 'unconfined' ? { mode: 'unconfined' } : { mode: 'localhost', name: value };
    } else {
      throw errors.invalid(`unsupported --security-opt "${o}"`);
    }
  }
  return out;
}
