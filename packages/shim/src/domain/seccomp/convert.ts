import { endianness, arch as osArch, release } from 'node:os';
import {
  BerthError,
  Code,
  type DockerSeccompProfile,
  type DockerSeccompRule,
  type SeccompArch,
  type SeccompFilter,
} from '@berth/api';

/** A syscall rule of the OCI runtime spec's linux.seccomp. */
export interface OciSyscall {
  names: string[];
  action: string;
  errnoRet?: number;
  args?: { index: number; value: number; valueTwo?: number; op: string }[];
}

/** The OCI runtime spec's linux.seccomp, as runc reads it. */
export interface OciSeccomp {
  defaultAction: string;
  defaultErrnoRet?: number;
  architectures?: string[];
  flags?: string[];
  syscalls?: OciSyscall[];
}

/**
 * The facts a Docker-format profile is resolved against: the container's bounding capabilities,
 * and the node's architecture (as Docker names it in `includes.arches`: amd64, arm64, s390x...)
 * and kernel release (for `minKernel`).
 */
export interface SeccompContext {
  caps: readonly string[];
  arch: string;
  kernel: string;
}

/** Node's process.arch to the architecture names of Docker profiles (libseccomp's). */
const NODE_ARCH: Record<string, string> = {
  x64: 'amd64',
  ia32: 'x86',
  arm64: 'arm64',
  arm: 'arm',
  ppc64: 'ppc64',
  ppc: 'ppc',
  s390x: 's390x',
  s390: 's390',
  riscv64: 'riscv64',
  loong64: 'loongarch64',
  mips: 'mips',
  mipsel: 'mipsel',
  mips64el: 'mipsel64',
};

/** Docker architecture names to the filter architecture of their native ABI. */
const NATIVE_ARCH: Record<string, SeccompArch> = {
  x86: 'SCMP_ARCH_X86',
  amd64: 'SCMP_ARCH_X86_64',
  x32: 'SCMP_ARCH_X32',
  arm: 'SCMP_ARCH_ARM',
  arm64: 'SCMP_ARCH_AARCH64',
  loongarch64: 'SCMP_ARCH_LOONGARCH64',
  mips: 'SCMP_ARCH_MIPS',
  mipsel: 'SCMP_ARCH_MIPSEL',
  mips64: 'SCMP_ARCH_MIPS64',
  mips64n32: 'SCMP_ARCH_MIPS64N32',
  mipsel64: 'SCMP_ARCH_MIPSEL64',
  mipsel64n32: 'SCMP_ARCH_MIPSEL64N32',
  ppc: 'SCMP_ARCH_PPC',
  ppc64: 'SCMP_ARCH_PPC64',
  ppc64le: 'SCMP_ARCH_PPC64LE',
  riscv64: 'SCMP_ARCH_RISCV64',
  s390: 'SCMP_ARCH_S390',
  s390x: 'SCMP_ARCH_S390X',
};

/** This machine's architecture in Docker's naming (ppc64 little-endian is ppc64le). */
export function nodeArch(): string {
  const a = osArch();
  if (a === 'ppc64' && endianness() === 'LE') return 'ppc64le';
  return NODE_ARCH[a] ?? a;
}

/** The facts of this node for a container with the given bounding capabilities. */
export function nodeContext(caps: readonly string[]): SeccompContext {
  return { caps, arch: nodeArch(), kernel: release() };
}

/** The filter architectures for `arch` of a profile's archMap: the native one and its sub-ABIs. */
export function architecturesFor(profile: DockerSeccompProfile, arch: string): string[] {
  if (profile.architectures?.length) return [...profile.architectures];
  const native = NATIVE_ARCH[arch];
  const entry = profile.archMap?.find((m) => m.architecture === native);
  return entry ? [entry.architecture, ...(entry.subArchitectures ?? [])] : [];
}

/** True when kernel release `have` ("6.1.0-18-amd64") is at least `want` ("4.8"). */
export function kernelAtLeast(have: string, want: string): boolean {
  const [hk = 0, hm = 0] = (/^(\d+)\.(\d+)/.exec(have) ?? []).slice(1).map(Number);
  const [wk = 0, wm = 0] = want.split('.').map(Number);
  return hk > wk || (hk === wk && hm >= wm);
}

function excluded(f: SeccompFilter | null | undefined, ctx: SeccompContext): boolean {
  if (!f) return false;
  if (f.arches?.includes(ctx.arch)) return true;
  if (f.caps?.some((c) => ctx.caps.includes(c))) return true;
  return f.minKernel !== undefined && kernelAtLeast(ctx.kernel, f.minKernel);
}

function included(f: SeccompFilter | null | undefined, ctx: SeccompContext): boolean {
  if (!f) return true;
  if (f.arches?.length && !f.arches.includes(ctx.arch)) return false;
  if (f.caps?.length && !f.caps.every((c) => ctx.caps.includes(c))) return false;
  return f.minKernel === undefined || kernelAtLeast(ctx.kernel, f.minKernel);
}

function ociRule(r: DockerSeccompRule): OciSyscall {
  const out: OciSyscall = { names: r.names?.length ? [...r.names] : [r.name as string], action: r.action };
  if (r.errnoRet !== undefined) out.errnoRet = r.errnoRet;
  if (r.args?.length) out.args = r.args.map((a) => ({ ...a }));
  return out;
}

/**
 * Resolves a Docker-format profile into the OCI linux.seccomp for one container on one node, as
 * Docker's daemon does: architectures from `archMap` for the node's architecture (or the
 * profile's own `architectures`), and each rule kept only when its `excludes` do not match and
 * its `includes` all do. `source` names the profile in errors. A profile that needs a seccomp
 * notify agent (SCMP_ACT_NOTIFY, listenerPath) is UNIMPLEMENTED: berth runs none.
 */
export function resolveProfile(
  profile: DockerSeccompProfile,
  ctx: SeccompContext,
  source: string,
): OciSeccomp {
  const notify =
    profile.defaultAction === 'SCMP_ACT_NOTIFY' ||
    profile.listenerPath !== undefined ||
    (profile.syscalls ?? []).some((r) => r.action === 'SCMP_ACT_NOTIFY');
  if (notify) {
    throw new BerthError(
      Code.UNIMPLEMENTED,
      `seccomp profile ${source}: SCMP_ACT_NOTIFY needs a seccomp notify agent, which berth does not run`,
    );
  }
  const out: OciSeccomp = { defaultAction: profile.defaultAction };
  if (profile.defaultErrnoRet !== undefined) out.defaultErrnoRet = profile.defaultErrnoRet;
  const architectures = architecturesFor(profile, ctx.arch);
  if (architectures.length) out.architectures = architectures;
  if (profile.flags?.length) out.flags = [...profile.flags];
  out.syscalls = (profile.syscalls ?? [])
    .filter((r) => !excluded(r.excludes, ctx) && included(r.includes, ctx))
    .map(ociRule);
  return out;
}
