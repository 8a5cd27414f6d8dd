import { existsSync, readFileSync } from 'node:fs';
import {
  type Config,
  connectNats,
  DEFAULT_NATS_URL,
  DEFAULT_REDIS_URL,
  hostLayout,
  loadConfig,
} from '@berth/kit';
import type { NatsConnection } from 'nats';

/** What every command can use: config, and a NATS connection made on first use. */
export interface CliContext {
  config: Config;
  /** Resolved URLs: configured ones, else those of a running `berth up`, else the defaults. */
  natsUrl: string;
  redisUrl: string;
  nats(): Promise<NatsConnection>;
  /** Closes what was opened; called by main after the command returns. */
  close(): Promise<void>;
  out: NodeJS.WriteStream;
  err: NodeJS.WriteStream;
}

/** Shape of the supervisor's state file (runRoot/supervisor.json) that the CLI reads. */
export interface SupervisorState {
  pid: number;
  natsUrl: string;
  redisUrl: string;
  embedded: boolean;
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

/** Builds the CLI context from config and environment. */
export function createContext(): CliContext {
  const config = loadConfig();
  const sup = readSupervisorState(config);
  const natsUrl = config.natsUrl ?? sup?.natsUrl ?? DEFAULT_NATS_URL;
  const redisUrl = config.redisUrl ?? sup?.redisUrl ?? DEFAULT_REDIS_URL;
  let nc: Promise<NatsConnection> | undefined;
  return {
    config,
    natsUrl,
    redisUrl,
    nats() {
      nc ??= connectNats({
        url: natsUrl,
        name: 'berth-cli',
        extra: { waitOnFirstConnect: false, maxReconnectAttempts: 0 },
      });
      return nc;
    },
    async close() {
      if (nc) await (await nc.catch(() => undefined))?.drain().catch(() => undefined);
    },
    out: process.stdout,
    err: process.stderr,
  };
}
