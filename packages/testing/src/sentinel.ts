import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { launch, stopProc, tcpOpen, waitReady } from './proc.js';
import { type RespTls, type RespValue, redisCommand } from './resp.js';
import { freePort, redisTlsArgs, type ServerTls, tempDir } from './servers.js';

/** One redis-server (data or sentinel) of a test set. */
export interface RedisNode {
  port: number;
  proc: ChildProcess;
  output(): string;
  /** SIGKILL, resolving once the process is gone. */
  kill(): Promise<void>;
  /** Sends one command (over TLS when the set uses it). */
  command(...args: string[]): Promise<RespValue>;
}

/** A Redis primary with one replica, monitored by Sentinel, on loopback. */
export interface RedisSentinelSet {
  /** The master group name the sentinels monitor. */
  name: string;
  primary: RedisNode;
  replica: RedisNode;
  sentinels: RedisNode[];
  /** Addresses of the sentinels, as berth's `redisSentinel.sentinels` takes them. */
  sentinelAddrs: { host: string; port: number }[];
  /** The port of the primary the sentinels report now. */
  primaryPort(): Promise<number>;
  /**
   * Resolves once every sentinel lists the server on `port` as a replica whose link to the
   * primary is up, i.e. one it may promote.
   */
  waitReplica(port: number, timeoutMs?: number): Promise<void>;
  /** Resolves with the new primary's port once the sentinels report one other than `oldPort`. */
  waitFailover(oldPort: number, timeoutMs?: number): Promise<number>;
  stop(): Promise<void>;
}

/** Polls `probe` until it is true; a bound, never a sleep standing in for a condition. */
async function until(what: string, probe: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe().catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`${what} within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Starts one redis-server on a free port; `args(port)` builds its command line. */
async function startNode(
  what: string,
  dir: string,
  args: (port: number) => string[],
  respTls: RespTls | undefined,
  readyLine = 'Ready to accept',
): Promise<RedisNode> {
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await freePort();
    const { proc, output } = launch('redis-server', args(port), dir);
    try {
      await waitReady(what, proc, output, async () => output().includes(readyLine) && tcpOpen(port));
    } catch (err) {
      if (output().includes('Address already in use')) continue;
      throw err;
    }
    return {
      port,
      proc,
      output,
      async kill() {
        if (proc.exitCode !== null || proc.signalCode !== null) return;
        const exited = once(proc, 'exit');
        proc.kill('SIGKILL');
        await exited;
      },
      command: (...a) => redisCommand(port, a, respTls),
    };
  }
  throw new Error(`${what}: could not bind a free port after 5 attempts`);
}

/**
 * Starts a Redis primary, a replica of it, and `sentinels` Sentinel processes (1 by default, with
 * quorum 1, to spare a shared machine's CPU; 3 give quorum 2) with short failover timings
 * (down-after-milliseconds 1000), and waits until the sentinels know the replica and each other.
 * With `tls`, every server, the replication link and the sentinels speak TLS only.
 */
export async function startRedisSentinel(
  opts: { sentinels?: number; tls?: ServerTls; name?: string } = {},
): Promise<RedisSentinelSet> {
  const name = opts.name ?? 'berth-test';
  const count = opts.sentinels ?? 1;
  const quorum = Math.floor(count / 2) + 1;
  const dir = await tempDir('sentinel');
  const tls = opts.tls;
  const respTls: RespTls | undefined = tls ? { ca: tls.ca, cert: tls.cert, key: tls.key } : undefined;
  const listen = (port: number) => (tls ? redisTlsArgs(tls, port) : ['--port', String(port)]);
  const data = (role: string, extra: string[]) => (port: number) => [
    ...listen(port),
    '--bind',
    '127.0.0.1',
    '--dir',
    join(dir, role),
    '--appendonly',
    'yes',
    '--save',
    '',
    '--dbfilename',
    `${role}.rdb`,
    '--appendfilename',
    `${role}.aof`,
    ...extra,
  ];
  await Promise.all(['primary', 'replica'].map((r) => mkdir(join(dir, r))));
  const primary = await startNode('redis primary', dir, data('primary', []), respTls);
  const replica = await startNode(
    'redis replica',
    dir,
    data('replica', ['--replicaof', '127.0.0.1', String(primary.port)]),
    respTls,
  );
  await until(
    'the replica did not link to the primary',
    async () => String(await replica.command('INFO', 'replication')).includes('master_link_status:up'),
    20_000,
  );
  const sentinels: RedisNode[] = [];
  for (let i = 0; i < count; i++) {
    // Sentinel rewrites its config file, so each has its own, writable.
    const file = join(dir, `sentinel-${i}.conf`);
    await writeFile(
      file,
      [
        `sentinel monitor ${name} 127.0.0.1 ${primary.port} ${quorum}`,
        `sentinel down-after-milliseconds ${name} 1000`,
        // Also the pause before another failover of the same group may start (twice this).
        `sentinel failover-timeout ${name} 5000`,
        `sentinel parallel-syncs ${name} 1`,
        '',
      ].join('\n'),
    );
    sentinels.push(
      await startNode(
        `redis sentinel ${i}`,
        dir,
        (port) => [file, '--sentinel', ...listen(port), '--bind', '127.0.0.1'],
        respTls,
        // A sentinel never prints "Ready to accept connections".
        'Sentinel ID is',
      ),
    );
  }
  await until(
    'the sentinels did not find the replica and each other',
    async () => {
      const infos = await Promise.all(sentinels.map((s) => s.command('INFO', 'sentinel')));
      return infos.every((i) => String(i).includes(`slaves=1,sentinels=${count}`));
    },
    30_000,
  );
  const primaryPort = async () => {
    for (const s of sentinels) {
      const addr = await s.command('SENTINEL', 'get-master-addr-by-name', name).catch(() => null);
      if (Array.isArray(addr)) return Number(addr[1]);
    }
    throw new Error(`no sentinel answered for ${name}`);
  };
  return {
    name,
    primary,
    replica,
    sentinels,
    sentinelAddrs: sentinels.map((s) => ({ host: '127.0.0.1', port: s.port })),
    primaryPort,
    async waitReplica(port, timeoutMs = 30_000) {
      const fields = (r: RespValue) => {
        const a = Array.isArray(r) ? r.map(String) : [];
        return Object.fromEntries(a.flatMap((v, i) => (i % 2 === 0 ? [[v, a[i + 1]]] : [])));
      };
      await until(
        `the sentinels do not see a healthy replica on port ${port}`,
        async () => {
          const lists = await Promise.all(sentinels.map((s) => s.command('SENTINEL', 'replicas', name)));
          return lists.every((list) =>
            (Array.isArray(list) ? list : [])
              .map(fields)
              .some(
                (r) => r.port === String(port) && r.flags === 'slave' && r['master-link-status'] === 'ok',
              ),
          );
        },
        timeoutMs,
      );
    },
    async waitFailover(oldPort, timeoutMs = 30_000) {
      let now = oldPort;
      await until(
        `sentinel did not fail ${name} over from port ${oldPort}`,
        async () => {
          now = await primaryPort();
          return now !== oldPort;
        },
        timeoutMs,
      );
      return now;
    },
    async stop() {
      await Promise.all([...sentinels, primary, replica].map((n) => stopProc(n.proc)));
      await rm(dir, { recursive: true, force: true });
    },
  };
}
