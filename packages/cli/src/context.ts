// First: the kit's config schemas below are built when imported (see zod-jitless.ts).
import './zod-jitless.js';
import { existsSync, readFileSync } from 'node:fs';
import { BerthError, Code } from '@berth/api/errors';
import { DEFAULT_NAMESPACE } from '@berth/api/subjects';
import {
  type Config,
  DEFAULT_NATS_URL,
  DEFAULT_REDIS_URL,
  loadConfig,
  ownTls,
  ownUrl,
} from '@berth/kit/config';
import { hostLayout } from '@berth/kit/layout';
import { connectNats } from '@berth/kit/nats';
import { redactUrl } from '@berth/kit/redact';
import type { TlsFiles } from '@berth/kit/tls';
import type { NatsConnection } from 'nats';

/** What every command can use: config, and a NATS connection made on first use. */
export interface CliContext {
  config: Config;
  /** The namespace the command works in (-n/--namespace, which sets BERTH_NAMESPACE, else "default"). */
  namespace: string;
  /** Resolved URLs: configured ones, else those of a running `berth up`, else the defaults. */
  natsUrl: string;
  redisUrl: string;
  nats(): Promise<NatsConnection>;
  /** Closes what was opened; called by main after the command returns. */
  close(): Promise<void>;
  out: NodeJS.WriteStream;
  err: NodeJS.WriteStream;
  /** Where the user ran the command (for a served one, the launcher's environment and directory). */
  caller: Caller;
  /** Calls `fn` for each SIGINT, SIGTERM or SIGHUP the user's command gets; returns how to stop. */
  onSignal(fn: (sig: NodeJS.Signals) => void): () => void;
  /**
   * Resolves when the user is gone: the client of a served command hung up (killed, its reader
   * gone). The command then stops as the CLI killed there would (never, for one run by hand).
   */
  gone: Promise<void>;
}

/** The environment and working directory a command was run in: files and bare `-e NAME` are theirs. */
export interface Caller {
  env: NodeJS.ProcessEnv;
  cwd: string;
}

/** The signals a command forwards to what it runs (docker's sig-proxy). */
export const FORWARDED_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

/** A user that is never gone: the CLI's own process ends with the command. */
const NEVER = new Promise<void>(() => undefined);

/** Signals as this process gets them. */
function processSignals(fn: (sig: NodeJS.Signals) => void): () => void {
  const handlers = FORWARDED_SIGNALS.map((sig) => {
    const h = () => fn(sig);
    process.on(sig, h);
    return [sig, h] as const;
  });
  return () => {
    for (const [sig, h] of handlers) process.off(sig, h);
  };
}

/** Life-cycle states of one supervised process. */
export type ChildStatus = 'running' | 'backoff' | 'stopping' | 'stopped';

/** One process the supervisor runs: a service replica or an embedded server. */
export interface ChildState {
  /** Service name (`image-service`) or embedded server (`nats-server`, `redis-server`). */
  name: string;
  kind: 'service' | 'embedded';
  /** 1-based replica number. */
  replica: number;
  /** Current pid; null while waiting to restart or after it stopped. */
  pid: number | null;
  status: ChildStatus;
  /** How often it was restarted after dying. */
  restarts: number;
  startedAt: string | null;
  logFile: string;
  /** argv element identifying the program in /proc/<pid>/cmdline, checked before signalling. */
  marker: string;
  /** How the last run ended (`exit code 1`, `killed by SIGKILL`). */
  lastExit?: string;
  /** For the co-hosted process (name `cohosted`): the services it runs. */
  services?: string[];
  /**
   * Digest of what the process was started with (command, arguments, berth's environment): a
   * supervisor started after this one died adopts the process only when its own plan gives the
   * same digest.
   */
  specHash?: string;
}

/**
 * Shape of the supervisor's state file (runRoot/supervisor.json), rewritten atomically on every
 * change. The CLI reads it to find NATS and Redis and the processes of the stack.
 */
export interface SupervisorState {
  pid: number;
  natsUrl: string;
  redisUrl: string;
  /** The CLI's own NATS login (permissions of its role), when the embedded NATS has one. */
  cliNatsUrl?: string;
  /** True when the supervisor runs its own nats-server and/or redis-server. */
  embedded: boolean;
  nodeId: string;
  startedAt: string;
  /** The control socket (`down`, `status`). */
  socket: string;
  children: ChildState[];
}

/** Reads the running supervisor's state file, if any. */
export function readSupervisorState(config: Config): SupervisorState | undefined {
  const file = hostLayout(config).run.supervisor;
  if (!existsSync(file)) return undefined;
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as SupervisorState;
  } catch {
    return undefined;
  }
}

/**
 * The CLI's TLS files for NATS (`services.cli.natsTls`, else `natsTls`), only for a configured
 * NATS: the embedded one of `berth up` serves plain TCP on loopback.
 */
export function cliNatsTls(config: Config): { tls?: TlsFiles } {
  const tls = config.natsUrl ? ownTls(config, 'cli', 'natsTls') : undefined;
  return tls ? { tls } : {};
}

/** Where a context comes from when it is not this process's own command (served.ts). */
export interface ContextOptions {
  /** The environment the config, namespace and URLs are read from (default: this process's). */
  env?: NodeJS.ProcessEnv;
  /** The config, when the caller already loaded it from `env`. */
  config?: Config;
  out?: NodeJS.WriteStream;
  err?: NodeJS.WriteStream;
  /** A connection to the URL the context resolved, used instead of its own and not closed with it. */
  sharedNats?: (url: string) => Promise<NatsConnection>;
  /** The user's working directory (default: this process's). */
  cwd?: string;
  /** Where the user's signals come from (default: this process's). */
  onSignal?: CliContext['onSignal'];
  /** When the user is gone (default: never). */
  gone?: Promise<void>;
}

/** Builds the CLI context from config and environment. */
export function createContext(opts: ContextOptions = {}): CliContext {
  const env = opts.env ?? process.env;
  const config = opts.config ?? loadConfig(env);
  // The supervisor's state file only matters for a URL the config does not give.
  const own = ownUrl(config, 'cli', 'natsUrl');
  const sup = own && config.redisUrl ? undefined : readSupervisorState(config);
  const natsUrl = own ?? sup?.cliNatsUrl ?? sup?.natsUrl ?? DEFAULT_NATS_URL;
  const redisUrl = config.redisUrl ?? sup?.redisUrl ?? DEFAULT_REDIS_URL;
  let nc: Promise<NatsConnection> | undefined;
  /** The connection once made: only a made one is drained at close. */
  let made: NatsConnection | undefined;
  const shared = opts.sharedNats;
  /** This context's own connection (drained at close), or the shared one (left open). */
  const connect = (): Promise<NatsConnection> =>
    shared
      ? shared(natsUrl)
      : connectNats({
          url: natsUrl,
          name: 'berth-cli',
          // A creds file belongs to a configured NATS; an embedded one takes its credentials from the URL.
          ...(config.natsUrl && config.natsCreds ? { creds: config.natsCreds } : {}),
          ...cliNatsTls(config),
          extra: { waitOnFirstConnect: false, maxReconnectAttempts: 0 },
        }).then((c) => {
          made = c;
          return c;
        });
  return {
    config,
    namespace: env.BERTH_NAMESPACE || DEFAULT_NAMESPACE,
    natsUrl,
    redisUrl,
    nats() {
      nc ??= connect().catch((err: unknown) => unreachable(err, natsUrl));
      return nc;
    },
    async close() {
      if (shared) return;
      // A connect still under way was started early (`run`) by a command that then failed before
      // using it (a usage error): not waited for, so a server that never answers cannot hold the
      // error back for the connect's timeout; the process exits without it.
      if (made) await made.drain().catch(() => undefined);
      else
        nc?.then(
          (c) => c.close(),
          () => undefined,
        );
    },
    out: opts.out ?? process.stdout,
    err: opts.err ?? process.stderr,
    caller: { env, cwd: opts.cwd ?? process.cwd() },
    onSignal: opts.onSignal ?? processSignals,
    gone: opts.gone ?? NEVER,
  };
}

/** A failed NATS connect as the CLI reports it. */
function unreachable(err: unknown, natsUrl: string): never {
  // The kit's TLS refusals already name the server and the reason.
  if (err instanceof BerthError) throw err;
  // nats.js says only "CONNECTION_REFUSED" or "AUTHORIZATION_VIOLATION": name where and what to do.
  throw new BerthError(
    Code.UNAVAILABLE,
    `cannot reach NATS at ${redactUrl(natsUrl)} (${(err as Error).message}): is berth up? start it with 'berth up'`,
    { cause: err },
  );
}
