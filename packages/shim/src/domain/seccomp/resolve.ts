import { readFile, stat } from 'node:fs/promises';
import {
  BerthError,
  Code,
  type CriSecurityProfile,
  DockerSeccompProfile,
  type SeccompRequest,
  seccompFromCri,
} from '@berth/api';
import type { z } from 'zod';
import { nodeContext, type OciSeccomp, resolveProfile, type SeccompContext } from './convert.js';
import { DEFAULT_PROFILE } from './default-profile.js';

/** Profiles are small (Docker's default is 20 KiB); a bigger file is a wrong path, not a profile. */
const MAX_PROFILE_BYTES = 1 << 20;

function issuePath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const p of path) out += typeof p === 'number' ? `[${p}]` : `${out ? '.' : ''}${String(p)}`;
  return out || 'profile';
}

/**
 * Checks a parsed profile against Docker's format; INVALID_ARGUMENT names `source`, the field
 * and the problem (an unknown action or architecture, a missing defaultAction...).
 */
export function validateSeccompProfile(value: unknown, source: string): DockerSeccompProfile {
  const r = DockerSeccompProfile.safeParse(value);
  if (r.success) return r.data;
  const first = r.error.issues[0] as z.core.$ZodIssue;
  const more = r.error.issues.length > 1 ? ` (and ${r.error.issues.length - 1} more problems)` : '';
  throw new BerthError(
    Code.INVALID_ARGUMENT,
    `seccomp profile ${source}: ${issuePath(first.path)}: ${first.message}${more}`,
  );
}

/** Parses the text of a Docker-format profile file; bad JSON is INVALID_ARGUMENT naming `source`. */
export function parseSeccompProfile(text: string, source: string): DockerSeccompProfile {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new BerthError(
      Code.INVALID_ARGUMENT,
      `seccomp profile ${source} is not valid JSON: ${(err as Error).message}`,
    );
  }
  return validateSeccompProfile(value, source);
}

/**
 * Reads and parses a profile file on this machine: NOT_FOUND when the path names no file,
 * INVALID_ARGUMENT (naming the path) when it is not a readable, valid profile.
 */
export async function loadSeccompProfile(path: string): Promise<DockerSeccompProfile> {
  const source = `"${path}"`;
  if (!path.startsWith('/')) {
    throw new BerthError(Code.INVALID_ARGUMENT, `seccomp profile ${source} must be an absolute path`);
  }
  try {
    const st = await stat(path);
    if (!st.isFile()) throw new BerthError(Code.INVALID_ARGUMENT, `seccomp profile ${source} is not a file`);
    if (st.size > MAX_PROFILE_BYTES) {
      throw new BerthError(Code.INVALID_ARGUMENT, `seccomp profile ${source} is larger than 1 MiB`);
    }
    return parseSeccompProfile(await readFile(path, 'utf8'), source);
  } catch (err) {
    if (err instanceof BerthError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') {
      throw new BerthError(Code.NOT_FOUND, `seccomp profile ${source} not found`);
    }
    throw new BerthError(
      Code.INVALID_ARGUMENT,
      `cannot read seccomp profile ${source}: ${(err as Error).message}`,
    );
  }
}

/**
 * The OCI linux.seccomp of a container, or undefined for none: berth's default profile, a
 * caller's Docker-format profile, or a localhost profile file (read here, so call it on the
 * container's node), each resolved for `ctx` (bounding caps, node architecture and kernel).
 */
export async function seccompSection(
  req: SeccompRequest,
  ctx: SeccompContext,
): Promise<OciSeccomp | undefined> {
  switch (req.mode) {
    case 'unconfined':
      return undefined;
    case 'default':
      return resolveProfile(DEFAULT_PROFILE, ctx, 'default');
    case 'profile':
      return resolveProfile(req.profile, ctx, req.source ? `"${req.source}"` : '(sent with the request)');
    case 'localhost':
      return resolveProfile(await loadSeccompProfile(req.path), ctx, `"${req.path}"`);
  }
}

/**
 * The OCI linux.seccomp for a CRI SecurityProfile (RuntimeDefault, Unconfined, Localhost with
 * the path of a profile on this node) and a container's bounding capabilities, on this node's
 * architecture and kernel. Unset is unconfined, as the CRI defines it. For the CRI gateway.
 */
export async function criSeccompSection(
  profile: CriSecurityProfile | undefined | null,
  caps: readonly string[],
): Promise<OciSeccomp | undefined> {
  return seccompSection(seccompFromCri(profile), nodeContext(caps));
}

type Obj = Record<string, unknown>;

/** The bounding capabilities of a spec's process (the set seccomp rules are conditioned on). */
export function boundingCaps(spec: Obj): string[] {
  const caps = (spec.process as Obj | undefined)?.capabilities as Obj | undefined;
  return Array.isArray(caps?.bounding) ? caps.bounding.map(String) : [];
}

/**
 * Sets (or, unconfined, removes) linux.seccomp of a spec for this node, conditioned on the spec's
 * bounding capabilities, as containerd's WithDefaultProfile does. Mutates `spec`.
 */
export async function applySeccomp(spec: Obj, req: SeccompRequest): Promise<void> {
  const section = await seccompSection(req, nodeContext(boundingCaps(spec)));
  const linux = (spec.linux as Obj | undefined) ?? {};
  spec.linux = linux;
  if (section) linux.seccomp = section;
  else delete linux.seccomp;
}
