import { existsSync, readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { BerthError, Code } from '@berth/api/errors';
import { NODE_ID_PATTERN } from '@berth/api/subjects';
import * as z from 'zod';
import { RedisSentinel, TlsFiles } from './tls.js';

/** Where NATS is when nothing says otherwise. */
export const DEFAULT_NATS_URL = 'nats://127.0.0.1:4222';
/** Where Redis is when nothing says otherwise. */
export const DEFAULT_REDIS_URL = 'redis://127.0.0.1:6379';

/** Where services serve metrics when nothing says otherwise: loopback, any free port. */
export const DEFAULT_METRICS_ADDRESS = '127.0.0.1:0';

/** Configuration every berth process reads: from a JSON file, then the environment (which wins). */
export const Config = z.object({
  natsUrl: z.string().min(1).optional(),
  redisUrl: z.string().min(1).optional(),
  /** A NATS user credentials file (JWT + nkey seed, as `nsc` writes it) for a configured natsUrl. */
  natsCreds: z.string().startsWith('/', 'NATS credentials file must be an absolute path').optional(),
  /** TLS to NATS: CA, client certificate and key files (the server is always verified). */
  natsTls: TlsFiles.optional(),
  /** TLS to Redis (with a `rediss://` URL): CA, client certificate and key files. */
  redisTls: TlsFiles.optional(),
  /** Redis under Sentinel: the URL's host is then the master group's name. */
  redisSentinel: RedisSentinel.optional(),
  nodeId: z.string().regex(NODE_ID_PATTERN, 'node id must be 1-64 of [a-zA-Z0-9_-]'),
  stateRoot: z.string().startsWith('/', 'state root must be an absolute path'),
  runRoot: z.string().startsWith('/', 'run root must be an absolute path'),
  logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']),
  /** Bound on how long in-flight requests may take to finish after SIGTERM. */
  shutdownGraceMs: z.number().int().positive(),
  /**
   * Where each service serves Prometheus metrics: `host:port` (port 0 picks a free port, listed by
   * `berth status`), or `off`. Loopback by default: metrics name images and containers.
   */
  metricsAddress: z
    .string()
    .regex(
      /^(off|(\[[0-9a-fA-F:.]+\]|[a-zA-Z0-9.-]+):\d{1,5})$/,
      'metrics address must be host:port or "off"',
    )
    .refine((v) => v === 'off' || Number(v.slice(v.lastIndexOf(':') + 1)) <= 65535, 'port must be 0-65535')
    .optional(),
  /**
   * Calls between the services of one node: `socket` (the default) sends them over unix sockets
   * under the run root (kit socket-route.ts), `nats` through nats-server like every other call.
   */
  sameNodeCalls: z.enum(['socket', 'nats']).optional(),
  /** Free-form per-service settings (e.g. image-service.maxConcurrentDownloads). */
  services: z.record(z.string(), z.record(z.string(), z.unknown())),
});
export type Config = z.infer<typeof Config>;

/** Default path of the config file; BERTH_CONFIG overrides it. */
export const DEFAULT_CONFIG_FILE = '/etc/berth/config.json';

const envMap = {
  BERTH_NATS_URL: 'natsUrl',
  BERTH_REDIS_URL: 'redisUrl',
  BERTH_NATS_CREDS: 'natsCreds',
  BERTH_NODE_ID: 'nodeId',
  BERTH_STATE_ROOT: 'stateRoot',
  BERTH_RUN_ROOT: 'runRoot',
  BERTH_LOG_LEVEL: 'logLevel',
  BERTH_SHUTDOWN_GRACE_MS: 'shutdownGraceMs',
  BERTH_METRICS_ADDRESS: 'metricsAddress',
  BERTH_SAME_NODE_CALLS: 'sameNodeCalls',
} as const;

/** Turns a hostname into a valid node id (dots and other characters become dashes). */
export function defaultNodeId(): string {
  const h = hostname()
    .replace(/[^a-zA-Z0-9_-]/g, '-')
    .slice(0, 64);
  return h.length > 0 ? h : 'node';
}

/**
 * Loads and validates the configuration. Throws a BerthError(INVALID_ARGUMENT) naming the bad field
 * and where it came from, so a service refuses to start with a clear line.
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const file = env.BERTH_CONFIG ?? DEFAULT_CONFIG_FILE;
  let fromFile: Record<string, unknown> = {};
  if (existsSync(file)) {
    try {
      fromFile = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
    } catch (err) {
      throw new BerthError(
        Code.INVALID_ARGUMENT,
        `config file ${file} is not valid JSON: ${(err as Error).message}`,
      );
    }
    if (typeof fromFile !== 'object' || fromFile === null || Array.isArray(fromFile)) {
      throw new BerthError(Code.INVALID_ARGUMENT, `config file ${file} must hold a JSON object`);
    }
  } else if (env.BERTH_CONFIG) {
    throw new BerthError(Code.INVALID_ARGUMENT, `config file ${file} (BERTH_CONFIG) does not exist`);
  }
  const merged: Record<string, unknown> = {
    nodeId: defaultNodeId(),
    stateRoot: '/var/lib/berth',
    runRoot: '/run/berth',
    logLevel: 'info',
    shutdownGraceMs: 10_000,
    services: {},
    ...fromFile,
  };
  for (const [envName, key] of Object.entries(envMap)) {
    const v = env[envName];
    if (v === undefined || v === '') continue;
    merged[key] = key === 'shutdownGraceMs' ? Number(v) : v;
  }
  const parsed = Config.safeParse(merged);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const field = issue?.path.join('.') ?? '?';
    const envName = Object.entries(envMap).find(([, k]) => k === field)?.[0];
    const where = envName && env[envName] ? `environment ${envName}` : `config file ${file}`;
    throw new BerthError(
      Code.INVALID_ARGUMENT,
      `invalid config "${field}" (from ${where}): ${issue?.message}`,
    );
  }
  return parsed.data;
}

/** Reads one per-service setting with a default, validated by a zod schema. */
export function serviceSetting<T>(
  config: Config,
  service: string,
  key: string,
  schema: z.ZodType<T>,
  dflt: T,
): T {
  const raw = config.services[service]?.[key];
  if (raw === undefined) return dflt;
  const parsed = schema.safeParse(raw);
  if (!parsed.success) {
    throw new BerthError(
      Code.INVALID_ARGUMENT,
      `invalid config "services.${service}.${key}": ${parsed.error.issues[0]?.message}`,
    );
  }
  return parsed.data;
}

/**
 * A process's own NATS or Redis URL for configured (external) servers that know one user per
 * service: `services.<name>.natsUrl` / `.redisUrl` (`services.cli.natsUrl` for the CLI), else the
 * shared `natsUrl` / `redisUrl`. `berth config acl` prints these settings with the servers' users.
 */
export function ownUrl(config: Config, principal: string, key: 'natsUrl' | 'redisUrl'): string | undefined {
  return serviceSetting(config, principal, key, z.string().min(1).optional(), undefined) ?? config[key];
}

/**
 * A process's own TLS files for NATS or Redis: `services.<name>.natsTls` / `.redisTls` (a client
 * certificate of its own), else the shared `natsTls` / `redisTls`.
 */
export function ownTls(config: Config, principal: string, key: 'natsTls' | 'redisTls'): TlsFiles | undefined {
  return serviceSetting(config, principal, key, TlsFiles.optional(), undefined) ?? config[key];
}
