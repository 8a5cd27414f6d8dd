// Contracts of seccomp: the Docker-format profile a user or kubelet hands berth, and the choice of
// filter a container is created with. The node's shim turns them into the OCI `linux.seccomp`.

import { errors } from './errors.js';
import * as z from './lazy-zod.js';

/** Actions libseccomp knows, as the OCI runtime spec spells them. */
export const SeccompAction = z.enum([
  'SCMP_ACT_KILL',
  'SCMP_ACT_KILL_PROCESS',
  'SCMP_ACT_KILL_THREAD',
  'SCMP_ACT_TRAP',
  'SCMP_ACT_ERRNO',
  'SCMP_ACT_TRACE',
  'SCMP_ACT_ALLOW',
  'SCMP_ACT_LOG',
  'SCMP_ACT_NOTIFY',
]);
export type SeccompAction = z.infer<typeof SeccompAction>;

/** Architectures of a filter, as the OCI runtime spec spells them. */
export const SeccompArch = z.enum([
  'SCMP_ARCH_X86',
  'SCMP_ARCH_X86_64',
  'SCMP_ARCH_X32',
  'SCMP_ARCH_ARM',
  'SCMP_ARCH_AARCH64',
  'SCMP_ARCH_MIPS',
  'SCMP_ARCH_MIPS64',
  'SCMP_ARCH_MIPS64N32',
  'SCMP_ARCH_MIPSEL',
  'SCMP_ARCH_MIPSEL64',
  'SCMP_ARCH_MIPSEL64N32',
  'SCMP_ARCH_PPC',
  'SCMP_ARCH_PPC64',
  'SCMP_ARCH_PPC64LE',
  'SCMP_ARCH_S390',
  'SCMP_ARCH_S390X',
  'SCMP_ARCH_PARISC',
  'SCMP_ARCH_PARISC64',
  'SCMP_ARCH_RISCV64',
  'SCMP_ARCH_LOONGARCH64',
  'SCMP_ARCH_M68K',
  'SCMP_ARCH_SH',
  'SCMP_ARCH_SHEB',
]);
export type SeccompArch = z.infer<typeof SeccompArch>;

/** Comparison operators of a syscall argument filter. */
export const SeccompOp = z.enum([
  'SCMP_CMP_NE',
  'SCMP_CMP_LT',
  'SCMP_CMP_LE',
  'SCMP_CMP_EQ',
  'SCMP_CMP_GE',
  'SCMP_CMP_GT',
  'SCMP_CMP_MASKED_EQ',
]);
export type SeccompOp = z.infer<typeof SeccompOp>;

const u64 = z.number().int().nonnegative();

/** One argument condition of a syscall rule (index 0-5 of the syscall's arguments). */
export const SeccompArg = z.object({
  index: z.number().int().min(0).max(5),
  value: u64,
  valueTwo: u64.optional(),
  op: SeccompOp,
});
export type SeccompArg = z.infer<typeof SeccompArg>;

/**
 * A condition on a Docker-format rule: capabilities of the container's bounding set, the node's
 * architecture (Go names: amd64, arm64, s390x...) and its minimum kernel ("<kernel>.<major>").
 */
export const SeccompFilter = z.object({
  caps: z.array(z.string()).optional(),
  arches: z.array(z.string()).optional(),
  minKernel: z
    .string()
    .regex(/^\d+\.\d+$/, 'minKernel must be "<kernel>.<major>", e.g. "4.8"')
    .optional(),
});
export type SeccompFilter = z.infer<typeof SeccompFilter>;

/** A Docker-format syscall rule: `names` (or the old single `name`), action, args, conditions. */
export const DockerSeccompRule = z
  .object({
    names: z.array(z.string().min(1)).optional(),
    name: z.string().min(1).optional(),
    action: SeccompAction,
    errnoRet: z.number().int().nonnegative().optional(),
    args: z.array(SeccompArg).nullish(),
    comment: z.string().optional(),
    includes: SeccompFilter.nullish(),
    excludes: SeccompFilter.nullish(),
  })
  .refine((r) => !(r.name && r.names?.length), "a rule names 'name' or 'names', not both")
  .refine((r) => r.name || r.names?.length, "a rule needs 'names'");
export type DockerSeccompRule = z.infer<typeof DockerSeccompRule>;

/**
 * A seccomp profile in Docker's format (`docker run --security-opt seccomp=profile.json`), which
 * also reads the OCI `linux.seccomp` form: `architectures` or `archMap` (expanded for the node's
 * architecture), rules with includes/excludes resolved for the container's capabilities.
 */
export const DockerSeccompProfile = z
  .object({
    defaultAction: SeccompAction,
    defaultErrnoRet: z.number().int().nonnegative().optional(),
    architectures: z.array(SeccompArch).nullish(),
    archMap: z
      .array(z.object({ architecture: SeccompArch, subArchitectures: z.array(SeccompArch).nullish() }))
      .nullish(),
    flags: z
      .array(
        z.enum([
          'SECCOMP_FILTER_FLAG_TSYNC',
          'SECCOMP_FILTER_FLAG_LOG',
          'SECCOMP_FILTER_FLAG_SPEC_ALLOW',
          'SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV',
        ]),
      )
      .nullish(),
    listenerPath: z.string().optional(),
    syscalls: z.array(DockerSeccompRule).nullish(),
  })
  .refine(
    (p) => !(p.architectures?.length && p.archMap?.length),
    "a profile names 'architectures' or 'archMap', not both",
  );
export type DockerSeccompProfile = z.infer<typeof DockerSeccompProfile>;

/**
 * The seccomp filter a container is created with. `default`: berth's default profile for its
 * capabilities (Docker's and containerd's); `unconfined`: none; `profile`: a Docker-format
 * profile sent by the caller (the CLI reads the file on the user's machine; `source` names it in
 * errors); `localhost`: a profile file on the container's node (CRI's Localhost), read there.
 */
export const SeccompRequest = z.discriminatedUnion('mode', [
  z.object({ mode: z.literal('default') }),
  z.object({ mode: z.literal('unconfined') }),
  z.object({ mode: z.literal('profile'), profile: DockerSeccompProfile, source: z.string().optional() }),
  z.object({
    mode: z.literal('localhost'),
    path: z.string().startsWith('/', 'a localhost seccomp profile must be an absolute path'),
  }),
]);
export type SeccompRequest = z.infer<typeof SeccompRequest>;

/** Shape of CRI's SecurityProfile (runtime/v1), enums by name as the gateway decodes them. */
export interface CriSecurityProfile {
  profileType?: 'RuntimeDefault' | 'Unconfined' | 'Localhost' | string;
  localhostRef?: string;
}

/**
 * Maps a CRI SecurityProfile to the seccomp request of a container. Unset means unconfined, as
 * the CRI says (kubelet sends RuntimeDefault when it wants the default). A Localhost reference
 * must be an absolute path on the node; anything else is INVALID_ARGUMENT.
 */
export function seccompFromCri(p: CriSecurityProfile | undefined | null): SeccompRequest {
  switch (p?.profileType) {
    case undefined:
    case 'Unconfined':
      return { mode: 'unconfined' };
    case 'RuntimeDefault':
      return { mode: 'default' };
    case 'Localhost': {
      const path = p.localhostRef ?? '';
      if (!path.startsWith('/')) {
        throw errors.invalid(`seccomp localhost_ref "${path}" must be an absolute path`);
      }
      return { mode: 'localhost', path };
    }
    default:
      throw errors.invalid(`unknown seccomp profile type "${String(p?.profileType)}"`);
  }
}

/**
 * Maps CRI's deprecated `seccomp_profile_path` string: "" and "unconfined" mean none,
 * "runtime/default" (and the older "docker/default") the default profile, "localhost/<absolute
 * path>" a profile file on the node (kubelet writes "localhost//var/lib/kubelet/seccomp/...").
 * Anything else is INVALID_ARGUMENT.
 */
export function seccompFromCriPath(path: string): SeccompRequest {
  if (path === '' || path === 'unconfined') return { mode: 'unconfined' };
  if (path === 'runtime/default' || path === 'docker/default') return { mode: 'default' };
  if (path.startsWith('localhost/')) {
    return seccompFromCri({ profileType: 'Localhost', localhostRef: path.slice('localhost/'.length) });
  }
  throw errors.invalid(`unknown seccomp profile path "${path}"`);
}
