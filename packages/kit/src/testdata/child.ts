import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));

/** One parsed pino line of the child. */
export type LogLine = Record<string, unknown>;

/** The test service (test-service.mjs) running as its own node process. */
export interface ChildService {
  proc: ChildProcess;
  nodeId: string;
  /** Everything the child wrote so far, for failure messages. */
  output(): string;
  /** Number of log lines seen so far; pass it as `from` to wait only for later lines. */
  mark(): number;
  /** Resolves with the first log line (at index >= from) that matches; rejects if the child exits first. */
  waitForLog(match: (l: LogLine) => boolean, opts?: { from?: number; timeoutMs?: number }): Promise<LogLine>;
  /** Resolves with the exit code (or signal name) once the child has exited. */
  exited: Promise<number | string>;
  /** SIGTERM, wait for exit (SIGKILL after 10 s), remove the temp dirs. */
  stop(): Promise<void>;
}

/** A random node id, so two tests never share subjects or keys. */
export function randomNode(): string {
  return `t-${randomBytes(4).toString('hex')}`;
}

/**
 * Starts test-service.mjs against the given servers with its own temp state/run roots and its own
 * config file, empty unless `config` is given (so a host's /etc/berth/config.json never leaks in). Resolves once it logged "ready",
 * unless `waitReady` is false.
 */
export async function startTestService(opts: {
  natsUrl: string;
  redisUrl: string;
  nodeId?: string;
  env?: Record<string, string>;
  /** The config file's content (e.g. natsTls, redisSentinel); empty by default. */
  config?: Record<string, unknown>;
  waitReady?: boolean;
}): Promise<ChildService> {
  const dir = await mkdtemp(join(tmpdir(), 'berth-kit-child-'));
  const config = join(dir, 'config.json');
  await writeFile(config, `${JSON.stringify(opts.config ?? {})}\n`);
  const nodeId = opts.nodeId ?? randomNode();
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env.OTEL_EXPORTER_OTLP_ENDPOINT;
  delete env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT;
  Object.assign(env, {
    BERTH_CONFIG: config,
    BERTH_NATS_URL: opts.natsUrl,
    BERTH_REDIS_URL: opts.redisUrl,
    BERTH_NODE_ID: nodeId,
    BERTH_STATE_ROOT: join(dir, 'state'),
    BERTH_RUN_ROOT: join(dir, 'run'),
    BERTH_LOG_LEVEL: 'info',
    ...opts.env,
  });
  const proc = spawn(process.execPath, [join(here, 'test-service.mjs')], {
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let partial = '';
  const lines: LogLine[] = [];
  const waiters = new Set<() => void>();
  proc.stdout?.on('data', (b: Buffer) => {
    out += b.toString();
    partial += b.toString();
    const parts = partial.split('\n');
    partial = parts.pop() ?? '';
    for (const p of parts) {
      try {
        lines.push(JSON.parse(p) as LogLine);
      } catch {
        lines.push({ raw: p });
      }
    }
    for (const w of waiters) w();
  });
  proc.stderr?.on('data', (b: Buffer) => {
    out += b.toString();
  });
  const exited = new Promise<number | string>((resolve) => {
    proc.on('exit', (code, signal) => {
      resolve(code ?? signal ?? 'unknown');
      for (const w of waiters) w();
    });
  });

  const child: ChildService = {
    proc,
    nodeId,
    output: () => out,
    mark: () => lines.length,
    waitForLog(match, o = {}) {
      const timeoutMs = o.timeoutMs ?? 15_000;
      let next = o.from ?? 0;
      return new Promise<LogLine>((resolve, reject) => {
        const check = () => {
          for (; next < lines.length; next++) {
            const l = lines[next];
            if (l && match(l)) {
              done();
              resolve(l);
              return;
            }
          }
          if (proc.exitCode !== null || proc.signalCode !== null) {
            done();
            reject(new Error(`test service exited (${proc.exitCode ?? proc.signalCode}) first:\n${out}`));
          }
        };
        const timer = setTimeout(() => {
          done();
          reject(new Error(`no matching log line within ${timeoutMs} ms:\n${out}`));
        }, timeoutMs);
        const done = () => {
          clearTimeout(timer);
          waiters.delete(check);
        };
        waiters.add(check);
        check();
      });
    },
    exited,
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill('SIGTERM');
        const t = setTimeout(() => proc.kill('SIGKILL'), 10_000);
        await exited;
        clearTimeout(t);
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
  if (opts.waitReady !== false) {
    await child.waitForLog((l) => l.msg === 'task-service ready');
  }
  return child;
}
