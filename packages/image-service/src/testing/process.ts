// Runs the built image-service (dist/main.js) as a real process for tests and benchmarks.
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { NatsConnection } from 'nats';

const MAIN = join(dirname(fileURLToPath(import.meta.url)), '..', 'main.js');

export interface ServiceProcess {
  proc: ChildProcess;
  output(): string;
  kill(signal?: NodeJS.Signals): Promise<void>;
}

/**
 * Starts one image-service replica with its own config file and waits until its `info` endpoint
 * answers on NATS (real readiness, no sleeps).
 */
export async function startImageService(o: {
  nc: NatsConnection;
  natsUrl: string;
  redisUrl: string;
  node: string;
  stateRoot: string;
  settings?: Record<string, unknown>;
  configDir: string;
  name?: string;
  /** V8 flags for the process (`berth up` gives its services the stack's, SERVICE_V8_FLAGS). */
  v8Flags?: string[];
}): Promise<ServiceProcess> {
  const nc = o.nc;
  const cfg = join(o.configDir, `config-${o.name ?? 'svc'}-${Math.random().toString(36).slice(2)}.json`);
  await writeFile(cfg, JSON.stringify({ services: { 'image-service': o.settings ?? {} } }));
  const main = MAIN.includes('/src/') ? MAIN.replace('/src/', '/dist/') : MAIN;
  const proc = spawn(process.execPath, [...(o.v8Flags ?? []), main], {
    env: {
      ...process.env,
      BERTH_CONFIG: cfg,
      BERTH_NATS_URL: o.natsUrl,
      BERTH_REDIS_URL: o.redisUrl,
      BERTH_NODE_ID: o.node,
      BERTH_STATE_ROOT: o.stateRoot,
      BERTH_RUN_ROOT: join(o.stateRoot, 'run'),
      BERTH_LOG_LEVEL: 'info',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  proc.stdout?.on('data', (b: Buffer) => {
    out += b.toString();
  });
  proc.stderr?.on('data', (b: Buffer) => {
    out += b.toString();
  });
  // Ready means this process logged that it serves (its endpoints are subscribed).
  const deadline = Date.now() + 20_000;
  while (!out.includes('image-service ready')) {
    if (proc.exitCode !== null) throw new Error(`image-service exited early:\n${out}`);
    if (Date.now() > deadline) throw new Error(`image-service not ready:\n${out}`);
    await new Promise((r) => setTimeout(r, 25));
  }
  await nc.flush();
  return {
    proc,
    output: () => out,
    async kill(signal: NodeJS.Signals = 'SIGTERM') {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      const exited = once(proc, 'exit');
      proc.kill(signal);
      await exited;
    },
  };
}
