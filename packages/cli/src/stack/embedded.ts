import type { ChildProcess } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { BerthError, Code } from '@berth/api';
import { Redis } from 'ioredis';
import type { ChildSpec } from './child.js';
import type { EmbeddedPlan } from './plan.js';

/**
 * The command line of an embedded server. Both bind 127.0.0.1 only; NATS runs JetStream with its
 * store under the state root and writes a ports file (used to know *our* server is listening);
 * Redis appends every write (AOF), keeps protected mode on and opens no unix socket.
 */
export function embeddedSpec(plan: EmbeddedPlan, nodeId: string, env: NodeJS.ProcessEnv): ChildSpec {
  mkdirSync(plan.dataDir, { recursive: true, mode: 0o700 });
  const base = { name: plan.kind, kind: 'embedded' as const, replica: 1, env, logFile: plan.logFile };
  if (plan.kind === 'nats-server') {
    return {
      ...base,
      command: 'nats-server',
      marker: 'nats-server',
      args: [
        '--addr',
        '127.0.0.1',
        '--port',
        String(plan.port),
        '--server_name',
        `berth-${nodeId}`,
        '--jetstream',
        '--store_dir',
        plan.dataDir,
        '--ports_file_dir',
        plan.dataDir,
      ],
    };
  }
  return {
    ...base,
    command: 'redis-server',
    marker: 'redis-server',
    args: [
      '--bind',
      '127.0.0.1',
      '--port',
      String(plan.port),
      '--protected-mode',
      'yes',
      '--dir',
      plan.dataDir,
      '--appendonly',
      'yes',
      '--appendfsync',
      'everysec',
      '--daemonize',
      'no',
    ],
  };
}

/**
 * Fails with a clear line when another program already listens on an embedded server's port:
 * otherwise berth would talk to a stranger's server, or its own would die with a bind error.
 */
export async function assertPortFree(plan: EmbeddedPlan): Promise<void> {
  const srv = createServer();
  const free = await new Promise<boolean>((resolve) => {
    srv.once('error', () => resolve(false));
    srv.listen(plan.port, '127.0.0.1', () => resolve(true));
  });
  if (free) await new Promise<void>((r) => srv.close(() => r()));
  if (!free) {
    const which = plan.kind === 'nats-server' ? 'NATS' : 'REDIS';
    const key = plan.kind === 'nats-server' ? 'natsPort' : 'redisPort';
    const url = plan.kind === 'nats-server' ? 'BERTH_NATS_URL' : 'BERTH_REDIS_URL';
    throw new BerthError(
      Code.FAILED_PRECONDITION,
      `port 127.0.0.1:${plan.port} for the embedded ${plan.kind} is in use: set embedded.${key} or ` +
        `BERTH_EMBEDDED_${which}_PORT to a free port, or ${url} to use that server`,
    );
  }
}

function natsListening(dir: string, pid: number): boolean {
  const name = readdirSync(dir).find((f) => f.endsWith(`_${pid}.ports`));
  if (!name) return false;
  try {
    const ports = JSON.parse(readFileSync(`${dir}/${name}`, 'utf8')) as { nats?: string[] };
    return (ports.nats?.length ?? 0) > 0;
  } catch {
    // Caught mid-write; the next poll reads it whole.
    return false;
  }
}

async function redisListening(port: number, pid: number): Promise<boolean> {
  const r = new Redis({
    host: '127.0.0.1',
    port,
    lazyConnect: true,
    retryStrategy: () => null,
    maxRetriesPerRequest: 0,
  });
  r.on('error', () => undefined);
  try {
    await r.connect();
    const info = await r.info('server');
    return new RegExp(`^process_id:${pid}\\s*$`, 'm').test(info);
  } catch {
    return false;
  } finally {
    r.disconnect();
  }
}

/**
 * Waits until this very server process (matched by pid, not just "something on the port")
 * accepts connections. Fails with the tail of its log if it exits or the bound passes.
 */
export async function waitEmbeddedReady(
  plan: EmbeddedPlan,
  proc: ChildProcess,
  timeoutMs = 20_000,
): Promise<void> {
  const pid = proc.pid;
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (pid === undefined || proc.exitCode !== null || proc.signalCode !== null) {
      throw new BerthError(
        Code.UNAVAILABLE,
        `embedded ${plan.kind} exited during start-up (${proc.exitCode ?? proc.signalCode}): ${logTail(plan.logFile)}`,
      );
    }
    const ok =
      plan.kind === 'nats-server' ? natsListening(plan.dataDir, pid) : await redisListening(plan.port, pid);
    if (ok) return;
    await sleep(50);
  }
  throw new BerthError(
    Code.DEADLINE_EXCEEDED,
    `embedded ${plan.kind} did not listen on 127.0.0.1:${plan.port} within ${timeoutMs} ms: ${logTail(plan.logFile)}`,
  );
}

/** The last few lines of a log file, joined for an error message. */
export function logTail(file: string, lines = 3): string {
  try {
    const text = readFileSync(file, 'utf8').trimEnd().split('\n');
    return text.slice(-lines).join(' | ');
  } catch {
    return `(no log at ${file})`;
  }
}
