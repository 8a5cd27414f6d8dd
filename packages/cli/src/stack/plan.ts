import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BerthError, Code, type Principal, Service } from '@berth/api';
import { principalLogins, withLogin } from '@berth/kit/acl-config';
import { type Config, DEFAULT_CONFIG_FILE, serviceSetting } from '@berth/kit/config';
import { hostLayout } from '@berth/kit/layout';
import * as z from 'zod';
import { entryPoint } from './bundles.js';
import { embeddedCredentials } from './credentials.js';
import { embeddedConfigText } from './embedded-config.js';
import {
  type EmbeddedPlan,
  type PrincipalUrls,
  type ServicePlan,
  STACK_SERVICES,
  type StackPlan,
} from './stack-plan.js';

export {
  COHOSTED_LOGINS_ENV,
  type CohostedPlan,
  type EmbeddedPlan,
  type PrincipalUrls,
  type ServicePlan,
  STACK_SERVICES,
  STOP_ORDER,
  type StackPlan,
} from './stack-plan.js';

/**
 * Services that may run as several replicas on one host. The shim is one per host (it owns the
 * container monitors) and the cri-gateway owns one socket, so both stay single.
 */
export const SCALABLE: ReadonlySet<Service> = new Set<Service>([
  Service.image,
  Service.snapshot,
  Service.task,
]);

/** Most replicas of one service `berth up` accepts; more would only contend for two cores. */
export const MAX_REPLICAS = 16;

/**
 * V8 flags every process `berth up` starts runs with, unless `services.<name>.v8Flags` says
 * otherwise (`services.cohosted.v8Flags` for the co-hosted process). `--optimize-for-size`: V8's
 * memory reducer does not run in an idle Node process, so the garbage of the last burst stays
 * resident for as long as the service idles; this flag makes V8 collect sooner (smaller heap
 * growth steps, a 1 MB semi-space). 9-11 MB less PSS for the separate stack after the workload, in
 * two side-by-side runs (docs/benchmarks.md, footprint round 2); a bare 1 MB semi-space alone
 * bought nothing measurable (round 1). `--liftoff-only`: fetch() parses HTTP with undici's llhttp,
 * a WebAssembly module whose parser function V8 recompiles with TurboFan once it is hot (a pull
 * burst): 24 MB of compiler zone memory at peak (32 MB in all) and 0.3 s of CPU, malloc'd from
 * glibc's main heap by a V8 worker thread. Freed, it mostly stays resident (whatever was
 * allocated above it pins the heap), which is why the image-service was 34-59 MB after the same
 * workload (docs/benchmarks.md, footprint, branch h/img-heap). Liftoff, V8's baseline wasm
 * compiler, handles the whole module; the parser's speed does not show in a pull. The trade-off:
 * V8 lists the flag as one for testing, and under it a function Liftoff cannot compile aborts the
 * process instead of falling back to TurboFan. llhttp (the only wasm the services load) compiles
 * whole under Liftoff on x64 and arm64; a service that loads other wasm, or a new platform, should
 * be checked (service-flags.test.ts runs fetch() under these flags), or drop the flag through
 * `services.<name>.v8Flags`.
 */
export const SERVICE_V8_FLAGS: readonly string[] = ['--optimize-for-size', '--liftoff-only'];

const V8Flags = z.array(z.string().regex(/^--[a-z0-9-]+(=[A-Za-z0-9._-]+)?$/, 'must be a --v8-flag[=value]'));

/** The V8 flags of one process of the stack: its `v8Flags` setting, else SERVICE_V8_FLAGS. */
export function v8FlagsOf(config: Config, name: string): string[] {
  return serviceSetting(config, name, 'v8Flags', V8Flags, [...SERVICE_V8_FLAGS]);
}

/** Root of the berth checkout the CLI runs from (packages/cli/dist/stack -> repo root). */
export function repoRoot(): string {
  return resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', '..');
}

/** Where bundle-services.mjs puts the bundles of the stack's processes in this checkout. */
function bundlesDir(): string {
  return join(repoRoot(), 'packages', 'cli', 'dist', 'services');
}

/**
 * The entry point of the co-hosted process (all services in one) in this checkout: its bundle
 * when fresh (bundles.ts), else the compiled module.
 */
export function cohostedMain(env: NodeJS.ProcessEnv = process.env): string {
  const compiled = join(repoRoot(), 'packages', 'cli', 'dist', 'stack', 'cohosted-main.js');
  return entryPoint(bundlesDir(), 'cohosted', compiled, env);
}

/**
 * The entry point of the supervisor `berth up` forks in this checkout: its bundle when fresh
 * (bundles.ts), else the compiled module. Either file is named supervisor-main (cleanup.ts).
 */
export function supervisorMain(env: NodeJS.ProcessEnv = process.env): string {
  const compiled = join(repoRoot(), 'packages', 'cli', 'dist', 'stack', 'supervisor-main.js');
  return entryPoint(bundlesDir(), 'supervisor-main', compiled, env);
}

/** The entry point of a service in this checkout: its bundle when fresh, else its dist/main.js. */
export function serviceMain(service: Service, env: NodeJS.ProcessEnv = process.env): string {
  return entryPoint(bundlesDir(), service, join(repoRoot(), 'packages', service, 'dist', 'main.js'), env);
}

/** Log file of one service replica: services/<name>.log, or <name>-<n>.log when it has replicas. */
export function serviceLogFile(serviceLogs: string, service: string, replica: number, count: number): string {
  return join(serviceLogs, count > 1 ? `${service}-${replica}.log` : `${service}.log`);
}

const Port = z.coerce.number().int().min(1).max(65535);
const MonitorPort = z.coerce.number().int().min(-1).max(65535);
const EmbeddedSection = z
  .object({ natsPort: Port.optional(), redisPort: Port.optional(), natsMonitorPort: MonitorPort.optional() })
  .passthrough()
  .optional();

/**
 * Reads the `embedded` section of the config file. The kit's Config does not model it (only
 * `berth up` cares), so the file is read here again with the same location rules.
 */
export function embeddedPorts(env: NodeJS.ProcessEnv = process.env): {
  natsPort: number;
  redisPort: number;
  natsMonitorPort: number;
} {
  const file = env.BERTH_CONFIG ?? DEFAULT_CONFIG_FILE;
  let section: z.infer<typeof EmbeddedSection>;
  if (existsSync(file)) {
    const raw = readRawConfig(file);
    const parsed = EmbeddedSection.safeParse(raw.embedded);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      throw new BerthError(
        Code.INVALID_ARGUMENT,
        `invalid config "embedded.${issue?.path.join('.')}" (from config file ${file}): ${issue?.message}`,
      );
    }
    section = parsed.data;
  }
  const fromEnv = (name: string, schema: typeof Port = Port): number | undefined => {
    const v = env[name];
    if (v === undefined || v === '') return undefined;
    const p = schema.safeParse(v);
    if (!p.success) throw new BerthError(Code.INVALID_ARGUMENT, `invalid ${name} "${v}": not a port number`);
    return p.data;
  };
  return {
    natsPort: fromEnv('BERTH_EMBEDDED_NATS_PORT') ?? section?.natsPort ?? 4222,
    redisPort: fromEnv('BERTH_EMBEDDED_REDIS_PORT') ?? section?.redisPort ?? 6379,
    // Any free port by default: a fixed one would collide between stacks on one host.
    natsMonitorPort:
      fromEnv('BERTH_EMBEDDED_NATS_MONITOR_PORT', MonitorPort) ?? section?.natsMonitorPort ?? -1,
  };
}

/** The config file as JSON, for the keys only `berth up` reads (loadConfig has checked its syntax). */
function readRawConfig(file: string): { embedded?: unknown; cohosted?: unknown } {
  return JSON.parse(readFileSync(file, 'utf8')) as { embedded?: unknown; cohosted?: unknown };
}

/**
 * Whether `berth up` co-hosts the services: the `cohosted` key of the config file (a boolean),
 * overridden by BERTH_COHOSTED (`1`/`true` or `0`/`false`).
 */
export function cohostedSetting(env: NodeJS.ProcessEnv = process.env): boolean {
  const v = env.BERTH_COHOSTED;
  if (v !== undefined && v !== '') {
    if (v === '1' || v === 'true') return true;
    if (v === '0' || v === 'false') return false;
    throw new BerthError(
      Code.INVALID_ARGUMENT,
      `invalid BERTH_COHOSTED "${v}": expected 1, 0, true or false`,
    );
  }
  const file = env.BERTH_CONFIG ?? DEFAULT_CONFIG_FILE;
  if (!existsSync(file)) return false;
  const raw = readRawConfig(file).cohosted;
  if (raw === undefined) return false;
  if (typeof raw !== 'boolean') {
    throw new BerthError(
      Code.INVALID_ARGUMENT,
      `invalid config "cohosted" (from config file ${file}): expected true or false`,
    );
  }
  return raw;
}

function isService(s: string): s is Service {
  return (STACK_SERVICES as readonly string[]).includes(s);
}

/** Checks one replica count for one service, naming both in the error. */
function checkReplicas(service: string, n: number, where: string): void {
  if (!isService(service)) {
    throw new BerthError(
      Code.INVALID_ARGUMENT,
      `${where}: unknown service "${service}" (one of ${STACK_SERVICES.join(', ')})`,
    );
  }
  if (!Number.isInteger(n) || n < 1 || n > MAX_REPLICAS) {
    throw new BerthError(
      Code.INVALID_ARGUMENT,
      `${where}: replicas of "${service}" must be a whole number from 1 to ${MAX_REPLICAS}`,
    );
  }
  if (n > 1 && !SCALABLE.has(service)) {
    throw new BerthError(
      Code.INVALID_ARGUMENT,
      `${where}: "${service}" runs once per host and cannot have replicas`,
    );
  }
}

/**
 * Parses `--replicas` values: each is `name=N`, several may be joined by commas
 * (`image-service=2,task-service=3`).
 */
export function parseReplicas(values: readonly string[]): Partial<Record<Service, number>> {
  const out: Partial<Record<Service, number>> = {};
  for (const value of values) {
    for (const part of value.split(',')) {
      if (part.trim() === '') continue;
      const m = /^\s*([a-z-]+)\s*=\s*(\d+)\s*$/.exec(part);
      if (!m) {
        throw new BerthError(
          Code.INVALID_ARGUMENT,
          `--replicas "${part}": expected SERVICE=N, e.g. image-service=2`,
        );
      }
      const [, name, count] = m as unknown as [string, string, string];
      checkReplicas(name, Number(count), '--replicas');
      out[name as Service] = Number(count);
    }
  }
  return out;
}

/**
 * Builds the plan of a stack from config (`services.<name>.replicas`, URLs, embedded ports) and
 * the command line (`--replicas`, which wins over config). When a server is embedded, its
 * credentials are read from (or first generated into) the state root's credentials file, and the
 * plan's URLs carry them. Configured URLs are used exactly as given.
 */
export function makePlan(
  config: Config,
  cliReplicas: Partial<Record<Service, number>>,
  env: NodeJS.ProcessEnv = process.env,
  opts: { cohosted?: boolean } = {},
): StackPlan {
  const layout = hostLayout(config);
  const cohosted = opts.cohosted ?? cohostedSetting(env);
  const counts = new Map<Service, number>();
  for (const service of STACK_SERVICES) {
    const fromConfig = serviceSetting(config, service, 'replicas', z.number().int(), 1);
    checkReplicas(service, fromConfig, `config "services.${service}.replicas"`);
    counts.set(service, cliReplicas[service] ?? fromConfig);
  }
  const services: ServicePlan[] = [];
  for (const service of STACK_SERVICES) {
    const n = counts.get(service) ?? 1;
    if (cohosted && n > 1) {
      throw new BerthError(
        Code.INVALID_ARGUMENT,
        `co-hosted mode runs one of each service in one process: replicas of "${service}" (${n}) ` +
          'need separate processes (berth up without --cohosted)',
      );
    }
    for (let replica = 1; replica <= n; replica++) {
      services.push({
        service,
        replica,
        main: serviceMain(service, env),
        v8Flags: v8FlagsOf(config, service),
        logFile: serviceLogFile(layout.serviceLogs, service, replica, n),
      });
    }
  }
  if (config.natsCreds && !config.natsUrl) {
    throw new BerthError(
      Code.INVALID_ARGUMENT,
      `natsCreds (${config.natsCreds}) is set but natsUrl is not: a credentials file is for a ` +
        'configured NATS; the embedded one uses generated credentials',
    );
  }
  // TLS and Sentinel settings describe configured servers; the embedded ones are plain loopback.
  const forConfigured: [string, unknown, string, string | undefined][] = [
    ['natsTls', config.natsTls, 'natsUrl', config.natsUrl],
    ['redisTls', config.redisTls, 'redisUrl', config.redisUrl],
    ['redisSentinel', config.redisSentinel, 'redisUrl', config.redisUrl],
  ];
  for (const [key, value, url, configured] of forConfigured) {
    if (value !== undefined && !configured) {
      throw new BerthError(
        Code.INVALID_ARGUMENT,
        `${key} is set but ${url} is not: it is for configured servers (docs/operations.md); ` +
          'the embedded ones serve plain TCP on loopback',
      );
    }
  }
  const embedded: EmbeddedPlan[] = [];
  const ports = config.natsUrl && config.redisUrl ? undefined : embeddedPorts(env);
  // Embedded servers require credentials: loopback alone would let every local user drive berth.
  const creds = ports ? embeddedCredentials(layout.embedded.credentials) : undefined;
  let natsUrl = config.natsUrl;
  let redisUrl = config.redisUrl;
  // Per-principal passwords derive from the two secrets, so credentials.json keeps its shape.
  const secrets = creds ? { nats: creds.nats.password, redis: creds.redis.password } : undefined;
  const users = secrets ? { node: config.nodeId, secrets } : undefined;
  let embeddedNats: string | undefined;
  let embeddedRedis: string | undefined;
  if (!natsUrl && ports && creds && users) {
    const { user, password } = creds.nats;
    embedded.push({
      kind: 'nats-server',
      port: ports.natsPort,
      monitorPort: ports.natsMonitorPort,
      dataDir: layout.embedded.nats,
      logFile: join(layout.serviceLogs, 'nats-server.log'),
      auth: { user, password },
      users,
      config: embeddedConfigText({ kind: 'nats-server', users }, { user, password }),
    });
    embeddedNats = `nats://127.0.0.1:${ports.natsPort}`;
    natsUrl = withLogin(embeddedNats, user, password);
  }
  if (!redisUrl && ports && creds && users) {
    embedded.push({
      kind: 'redis-server',
      port: ports.redisPort,
      dataDir: layout.embedded.redis,
      logFile: join(layout.serviceLogs, 'redis-server.log'),
      auth: { password: creds.redis.password },
      users,
      config: embeddedConfigText({ kind: 'redis-server', users }, { password: creds.redis.password }),
    });
    embeddedRedis = `redis://127.0.0.1:${ports.redisPort}`;
    redisUrl = `redis://:${creds.redis.password}@127.0.0.1:${ports.redisPort}`;
  }
  const logins: Partial<Record<Principal, PrincipalUrls>> = {};
  if (secrets) {
    for (const l of principalLogins(config.nodeId, secrets)) {
      const ownRedis =
        embeddedRedis && l.redisPassword ? withLogin(embeddedRedis, l.user, l.redisPassword) : undefined;
      logins[l.principal] = {
        natsUrl: embeddedNats ? withLogin(embeddedNats, l.user, l.natsPassword) : (natsUrl as string),
        ...(l.redisPassword ? { redisUrl: ownRedis ?? (redisUrl as string) } : {}),
      };
    }
  }
  return {
    nodeId: config.nodeId,
    stateRoot: config.stateRoot,
    runRoot: config.runRoot,
    natsUrl: natsUrl as string,
    redisUrl: redisUrl as string,
    ...(secrets ? { logins } : {}),
    embedded,
    services,
    ...(cohosted
      ? {
          cohosted: {
            main: cohostedMain(env),
            v8Flags: v8FlagsOf(config, 'cohosted'),
            logFile: join(layout.serviceLogs, 'cohosted.log'),
          },
        }
      : {}),
    // The service itself gives in-flight work shutdownGraceMs and hard-exits 5 s later; a
    // co-hosted process gives each of its services the grace in turn.
    stopGraceMs: config.shutdownGraceMs * (cohosted ? services.length : 1) + 5000,
  };
}
