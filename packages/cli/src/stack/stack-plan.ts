/**
 * The shape of a stack plan and the constants the supervisor needs to run one. Kept apart from
 * plan.ts (which builds plans from config with zod and the contracts) so that the long-lived
 * supervisor process loads only this, not the schemas it would use once (docs/benchmarks.md,
 * footprint).
 */
import type { Principal } from '@berth/api';
import { Service } from '@berth/api/subjects';
import type { AclSecrets } from '@berth/kit/acl-config';

/** The services `berth up` runs, in start order (the shim first: it owns the host's containers). */
export const STACK_SERVICES = [
  Service.shim,
  Service.snapshot,
  Service.image,
  Service.task,
  Service.cri,
] as const satisfies readonly Service[];

/**
 * Groups stopped one after the other by `berth down`: callers before callees, the shim last so
 * nothing asks it for work while it drains. Each group is stopped fully before the next.
 */
export const STOP_ORDER: readonly (readonly Service[])[] = [
  [Service.cri],
  [Service.task],
  [Service.image, Service.snapshot],
  [Service.shim],
];

/** One supervised service process of the plan. */
export interface ServicePlan {
  service: Service;
  /** 1-based replica number. */
  replica: number;
  /** The service's compiled entry point. */
  main: string;
  /** V8 flags the service's node runs with (before `main`); see SERVICE_V8_FLAGS. */
  v8Flags: string[];
  logFile: string;
}

/** An embedded server the supervisor starts because no URL was configured. */
export interface EmbeddedPlan {
  kind: 'nats-server' | 'redis-server';
  port: number;
  dataDir: string;
  logFile: string;
  /**
   * What a client must present: a user and password for NATS, a password (`requirepass`) for
   * Redis. From the credentials file; absent only in plans made before credentials existed.
   */
  auth?: { user?: string; password: string };
  /**
   * nats-server only: its HTTP monitoring port (/varz, /connz, ...) on 127.0.0.1; -1 picks a free
   * one (written to the ports file, shown by `berth status`), 0 turns monitoring off.
   */
  monitorPort?: number;
  /**
   * Also one user per principal (service or CLI), with the permissions of its role, whose
   * passwords derive from these secrets (kit/acl-config.ts). Absent in plans made before them.
   */
  users?: { node: string; secrets: AclSecrets };
  /**
   * The server's generated configuration text: the credentials above and, with `users`, each
   * principal's permissions (embedded-config.ts). Made by `berth up`, so the supervisor writes it
   * without loading the contracts; set whenever `auth` is.
   */
  config?: string;
}

/** The URLs one principal logs in with; set when an embedded server knows per-principal users. */
export interface PrincipalUrls {
  natsUrl: string;
  /** Absent for the CLI, which never uses Redis. */
  redisUrl?: string;
}

/**
 * The one process that runs every service when the stack is co-hosted (`berth up --cohosted`):
 * its entry point and its own log (each service still logs to its services/<name>.log).
 */
export interface CohostedPlan {
  main: string;
  v8Flags: string[];
  logFile: string;
}

/** Environment variable carrying each co-hosted service's own URLs (JSON), set by the supervisor. */
export const COHOSTED_LOGINS_ENV = 'BERTH_COHOSTED_LOGINS';

/** Everything the supervisor needs to run a stack; computed once by `berth up`. */
export interface StackPlan {
  nodeId: string;
  stateRoot: string;
  runRoot: string;
  /** The administrator's URLs (the supervisor's and the operator's, never a service's). */
  natsUrl: string;
  redisUrl: string;
  /** Each service's and the CLI's own URLs, where they differ from the administrator's. */
  logins?: Partial<Record<Principal, PrincipalUrls>>;
  embedded: EmbeddedPlan[];
  /** Every service replica; when `cohosted` is set, these run inside that one process. */
  services: ServicePlan[];
  /** Set when every service runs in one process instead of one process each. */
  cohosted?: CohostedPlan;
  /** How long a stopped process gets between SIGTERM and SIGKILL. */
  stopGraceMs: number;
}

/**
 * glibc malloc settings of every Node process `berth up` starts, unless its environment sets
 * them. Two arenas instead of up to eight per core: Node's threads (libuv's pool, V8's workers)
 * each took an arena of their own, whose freed memory stays resident in an idle daemon; 8-25 MB
 * less PSS for the stack after a workload (docs/benchmarks.md, footprint). A fixed mmap threshold
 * (glibc's initial 128 KiB): by default glibc raises it to the size of each large block freed
 * (Buffers of a pull, up to 32 MiB), after which such blocks come from the heap and stay resident
 * once freed; fixed, a block of 128 KiB or more is its own mapping, returned when freed. 12-16 MB
 * less PSS for the separate stack after the workload (footprint round 3). No change in what a
 * process does; a large allocation costs an mmap and a munmap.
 */
export const MALLOC_ENV: NodeJS.ProcessEnv = { MALLOC_ARENA_MAX: '2', MALLOC_MMAP_THRESHOLD_: '131072' };
