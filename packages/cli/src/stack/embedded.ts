import type { ChildProcess } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { BerthError, Code } from '@berth/api/errors';
import type { ChildSpec } from './child.js';
import { redisServerPid } from './redis-probe.js';
import type { EmbeddedPlan } from './stack-plan.js';

/** Path of the generated config file of an embedded server: <stateRoot>/embedded/<kind>.conf. */
export function embeddedConfigFile(plan: EmbeddedPlan): string {
  return join(dirname(plan.dataDir), `${plan.kind}.conf`);
}

/**
 * Writes the part of an embedded server's configuration that must not be on its command line
 * (where `ps` shows it to every user): the credentials clients must present and, for per-principal
 * users, their permissions (the plan's text, made by `berth up`). Mode 0600, temp name then rename.
 */
function writeAuthConfig(plan: EmbeddedPlan): string | undefined {
  if (!plan.auth) return undefined;
  const text = plan.config;
  if (text === undefined) {
    throw new BerthError(
      Code.INTERNAL,
      `the plan of the embedded ${plan.kind} has credentials but no configuration text (embeddedConfigText)`,
    );
  }
  const file = embeddedConfigFile(plan);
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, text, { mode: 0o600 });
  renameSync(tmp, file);
  return file;
}

/**
 * The command line of an embedded server. Both bind 127.0.0.1 only and require the credentials
 * of the plan, which they read from a generated 0600 config file (`-c` for NATS, the first
 * argument for Redis); the other settings stay on the command line. NATS runs JetStream with its
 * store under the state root and writes a ports file (used to know *our* server is listening);
 * Redis appends every write (AOF), keeps protected mode on and opens no unix socket.
 *
 * Redis keeps no RDB snapshots (`save ""`, and `stop-writes-on-bgsave-error no` should one be
 * asked for): the AOF is what makes berth's state durable, and a snapshot that failed on a full
 * state disk would keep refusing every write (MISCONF) until a later snapshot succeeded, up to an
 * hour after space was freed. A failed AOF write still refuses writes, as it must (berth persists
 * before it answers), but Redis retries it every second and accepts writes again by itself as soon
 * as the disk has room; the image- and snapshot-services free what a failed pull or unpack wrote.
 */
export function embeddedSpec(plan: EmbeddedPlan, nodeId: string, env: NodeJS.ProcessEnv): ChildSpec {
  mkdirSync(plan.dataDir, { recursive: true, mode: 0o700 });
  const conf = writeAuthConfig(plan);
  const base = { name: plan.kind, kind: 'embedded' as const, replica: 1, env, logFile: plan.logFile };
  if (plan.kind === 'nats-server') {
    return {
      ...base,
      // One P for Go's scheduler unless the environment says otherwise: a node's traffic is a few
      // thousand small messages a second at most, and with a second P idle every delivery also
      // wakes a second thread (its goroutine handed over), ~0.1 ms more per request and reply on
      // this machine's 2 cores (docs/benchmarks.md, "CreateContainer: the rootfs after the reply;
      // the embedded nats-server on one P").
      env: { GOMAXPROCS: '1', ...env },
      command: 'nats-server',
      marker: 'nats-server',
      args: [
        ...(conf ? ['-c', conf] : []),
        '--addr',
        '127.0.0.1',
        '--port',
        String(plan.port),
        // Monitoring listens on --addr (127.0.0.1) too.
        ...(plan.monitorPort !== undefined ? ['--http_port', String(plan.monitorPort)] : []),
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
      ...(conf ? [conf] : []),
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
      '--save',
      '',
      '--stop-writes-on-bgsave-error',
      'no',
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

/**
 * The monitoring URL of the embedded nats-server with this pid, from the ports file it writes
 * (undefined when it has none, e.g. monitoring is off).
 */
export function natsMonitorUrl(dir: string, pid: number): string | undefined {
  try {
    const name = readdirSync(dir).find((f) => f.endsWith(`_${pid}.ports`));
    if (!name) return undefined;
    const ports = JSON.parse(readFileSync(join(dir, name), 'utf8')) as { monitoring?: string[] };
    return ports.monitoring?.[0];
  } catch {
    return undefined;
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

async function redisListening(port: number, pid: number, password?: string): Promise<boolean> {
  return (await redisServerPid(port, password)) === pid;
}

/** True when the embedded server with this pid (adopted from a supervisor that died) accepts clients. */
export async function embeddedAnswers(plan: EmbeddedPlan, pid: number): Promise<boolean> {
  return plan.kind === 'nats-server'
    ? natsListening(plan.dataDir, pid)
    : await redisListening(plan.port, pid, plan.auth?.password);
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
      plan.kind === 'nats-server'
        ? natsListening(plan.dataDir, pid)
        : await redisListening(plan.port, pid, plan.auth?.password);
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
