// Test support (not built into dist): a busybox rootfs, OCI specs, and a shim agent process
// over real NATS and Redis with its own state root and node id.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { copyFile, mkdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BerthError, Code, ShimApi, type ShimState, type TaskExit } from '@berth/api';
import {
  type Client,
  client as clientOf,
  connectNats,
  connectRedis,
  createLogger,
  type EventEnvelope,
  type HostLayout,
  hostLayout,
  Redis,
  subscribeEvents,
} from '@berth/kit';
import { startNats, startRedis, tempDir } from '@berth/testing';
import type { NatsConnection } from 'nats';
import { parseCriLine } from '../cri-log.js';
import { ShimAgent } from '../domain/agent.js';
import type { AgentOptions } from '../domain/host.js';

const APPLETS = [
  'sh',
  'true',
  'false',
  'sleep',
  'echo',
  'cat',
  'ls',
  'ps',
  'dd',
  'head',
  'tr',
  'printf',
  'stty',
  'yes',
  'wc',
  'id',
  'env',
  'kill',
  'nc',
];

/** A rootfs holding busybox (static) and its applets as symlinks, built once per test file. */
export async function makeRootfs(dir: string): Promise<string> {
  await mkdir(join(dir, 'bin'), { recursive: true });
  for (const d of ['proc', 'sys', 'dev', 'tmp', 'etc', 'root'])
    await mkdir(join(dir, d), { recursive: true });
  await copyFile('/usr/bin/busybox', join(dir, 'bin', 'busybox'));
  for (const a of APPLETS) await symlink('busybox', join(dir, 'bin', a));
  return dir;
}

let baseSpec: Record<string, unknown> | undefined;

/** runc's default spec (from `runc spec`), adjusted: a command, no terminal, writable root, a cgroup. */
export async function makeSpec(
  args: string[],
  o: { cgroupsPath?: string; memoryLimit?: number; env?: string[] } = {},
): Promise<Record<string, unknown>> {
  if (!baseSpec) {
    const d = await tempDir('spec');
    execFileSync('runc', ['spec', '--bundle', d]);
    baseSpec = JSON.parse(await readFile(join(d, 'config.json'), 'utf8')) as Record<string, unknown>;
    await rm(d, { recursive: true, force: true });
  }
  const spec = structuredClone(baseSpec) as {
    process: Record<string, unknown>;
    root: Record<string, unknown>;
    linux: Record<string, unknown>;
  };
  spec.process.args = args;
  spec.process.terminal = false;
  if (o.env) spec.process.env = [...(spec.process.env as string[]), ...o.env];
  spec.root = { path: 'rootfs', readonly: false };
  if (o.cgroupsPath) spec.linux.cgroupsPath = o.cgroupsPath;
  if (o.memoryLimit) spec.linux.resources = { memory: { limit: o.memoryLimit, swap: o.memoryLimit } };
  return spec as unknown as Record<string, unknown>;
}

const pkgRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** One test world: NATS, Redis, a state root, a node id, and a shim agent process. */
export interface ShimWorld {
  node: string;
  stateRoot: string;
  runRoot: string;
  rootfs: string;
  nc: NatsConnection;
  client: Client<typeof ShimApi>;
  /** The Redis the agent uses (a second, in-process agent may share it under another node id). */
  redisUrl: string;
  redisRestart(): Promise<void>;
  /** Deletes every key in Redis (a Redis that lost its data). */
  redisFlush(): Promise<void>;
  /** The agent process now running. */
  agent(): ChildProcess;
  startAgent(): Promise<void>;
  /** SIGKILLs the agent (as a crash would) and waits for it to be gone. */
  killAgent(): Promise<void>;
  /** Stops the agent gracefully (SIGTERM, as `systemctl stop` would) and waits for it to exit. */
  stopAgent(): Promise<number | null>;
  exits: TaskExit[];
  /** Resolves with the next tasks.exit event matching pred (or one already seen). */
  nextExit(pred: (e: TaskExit) => boolean, timeoutMs?: number): Promise<TaskExit>;
  close(): Promise<void>;
}

/** Starts NATS, Redis and a shim agent (dist/main.js) with a private state root. */
export async function startWorld(
  o: {
    sweepMs?: number;
    shim?: Record<string, unknown>;
    /** Puts the state root on a tmpfs of this many MiB (a disk a test may fill; unmounted by close()). */
    stateTmpfsMb?: number;
    /**
     * Shell scripts the agent runs in place of runc or conmon (a runtime that hangs, fails
     * silently, refuses an option), written into the world's directory; each ends by exec'ing
     * the real binary for what it does not fake.
     */
    wrap?: { runc?: string; conmon?: string };
  } = {},
): Promise<ShimWorld> {
  const nats = await startNats({ jetstream: false });
  const redis = await startRedis();
  const base = await tempDir('shim');
  const stateRoot = join(base, 'state');
  const runRoot = join(base, 'run');
  const node = `shimtest-${Math.random().toString(36).slice(2, 10)}`;
  if (o.stateTmpfsMb) {
    await mkdir(stateRoot, { recursive: true });
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${o.stateTmpfsMb}m,mode=0755`, 'tmpfs', stateRoot]);
  }
  // The shim mounts only snapshots: the shared busybox tree is snapshot 1's fs directory.
  const rootfs = await makeRootfs(join(stateRoot, 'snapshots', '1', 'fs'));
  const wrapped: Record<string, string> = {};
  for (const [binary, script] of Object.entries(o.wrap ?? {})) {
    wrapped[binary] = join(base, `wrapped-${binary}`);
    await writeFile(wrapped[binary], script, { mode: 0o755 });
  }
  await writeFile(
    join(base, 'config.json'),
    JSON.stringify({
      services: { shim: { ...(o.sweepMs ? { sweepMs: o.sweepMs } : {}), ...wrapped, ...o.shim } },
    }),
  );
  const nc = await connectNats({ url: nats.url, name: 'shim-test' });
  const exits: TaskExit[] = [];
  const listeners = new Set<() => void>();
  subscribeEvents(nc, 'tasks.exit', (env: EventEnvelope) => {
    const e = env.event as TaskExit;
    if (e.node !== node) return;
    exits.push(e);
    for (const l of listeners) l();
  });
  let proc: ChildProcess | undefined;
  let output = '';
  const client = clientOf(nc, ShimApi, { node });
  const world: ShimWorld = {
    node,
    stateRoot,
    runRoot,
    rootfs,
    nc,
    client,
    redisUrl: redis.url,
    exits,
    agent: () => proc as ChildProcess,
    redisRestart: () => redis.restart(),
    async redisFlush() {
      const r = new Redis(redis.url);
      try {
        await r.flushall();
      } finally {
        r.disconnect();
      }
    },
    async startAgent() {
      output = '';
      proc = spawn(process.execPath, [join(pkgRoot, 'dist', 'main.js')], {
        env: {
          ...process.env,
          BERTH_CONFIG: join(base, 'config.json'),
          BERTH_NATS_URL: nats.url,
          BERTH_REDIS_URL: redis.url,
          BERTH_NODE_ID: node,
          BERTH_STATE_ROOT: stateRoot,
          BERTH_RUN_ROOT: runRoot,
          BERTH_LOG_LEVEL: 'info',
        },
        stdio: ['ignore', 'pipe', 'pipe'],
        // Its own process group, so killAgent can kill the whole group as a supervisor would.
        detached: true,
      });
      const keep = (b: Buffer) => {
        output += b.toString();
      };
      proc.stdout?.on('data', keep);
      proc.stderr?.on('data', keep);
      const p = proc;
      const deadline = Date.now() + 20_000;
      for (;;) {
        if (p.exitCode !== null) throw new Error(`shim agent exited early:\n${output}`);
        try {
          await client.list({}, { timeoutMs: 500 });
          return;
        } catch (err) {
          if (
            !(err instanceof BerthError) ||
            (err.code !== Code.UNAVAILABLE && err.code !== Code.DEADLINE_EXCEEDED)
          )
            throw err;
        }
        if (Date.now() > deadline) throw new Error(`shim agent not ready:\n${output}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    async killAgent() {
      const p = proc;
      if (!p || p.exitCode !== null || p.signalCode !== null) return;
      const gone = once(p, 'exit');
      // The whole process group: conmon must not be in it (it calls setsid after double-forking).
      process.kill(-(p.pid as number), 'SIGKILL');
      await gone;
    },
    async stopAgent() {
      const p = proc;
      if (!p || p.exitCode !== null || p.signalCode !== null) return p?.exitCode ?? null;
      const gone = once(p, 'exit');
      p.kill('SIGTERM');
      const [code] = (await gone) as [number | null];
      return code;
    },
    nextExit(pred, timeoutMs = 30_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const e = exits.find(pred);
          if (e) {
            listeners.delete(check);
            clearTimeout(t);
            resolve(e);
          }
        };
        const t = setTimeout(() => {
          listeners.delete(check);
          reject(new Error(`no matching tasks.exit within ${timeoutMs} ms; seen ${JSON.stringify(exits)}`));
        }, timeoutMs);
        listeners.add(check);
        check();
      });
    },
    async close() {
      // Leave nothing running: kill and delete every task this world made.
      try {
        if (proc && proc.exitCode === null && proc.signalCode === null) {
          const { tasks } = await client.list({});
          for (const t of tasks) {
            if (t.status !== 'stopped') {
              await client
                .kill({ namespace: t.namespace, id: t.id, signal: 'SIGKILL', all: true })
                .catch(() => undefined);
              if (t.status !== 'created')
                await client
                  .wait({ namespace: t.namespace, id: t.id }, { timeoutMs: 10_000 })
                  .catch(() => undefined);
            }
            await client.delete({ namespace: t.namespace, id: t.id }).catch(() => undefined);
          }
          const gone = once(proc, 'exit');
          proc.kill('SIGTERM');
          await gone;
        }
      } finally {
        await removeTestCgroups(node);
        if (o.stateTmpfsMb) execFileSync('umount', ['-l', stateRoot]);
        await nc.close();
        await nats.stop();
        await redis.stop();
        await rm(base, { recursive: true, force: true });
      }
    },
  };
  await world.startAgent();
  return world;
}

/** A random task id (hex, as the task-service makes them). */
export function newId(): string {
  return [...Array(32)].map(() => Math.floor(Math.random() * 16).toString(16)).join('');
}

/** The rootfs mounts of a test task: a read-write bind of the shared busybox tree. */
export function bindRootfs(rootfs: string) {
  return [{ type: 'bind', source: rootfs, options: ['rbind', 'rw'] }];
}

/**
 * Creates a task of `args` (id `o.id` or a new one) in namespace `ns` on the world's busybox
 * rootfs, in a test cgroup of its own (`o` as makeSpec's, `editSpec` changing the spec made, and
 * the task's `logPath`), without a terminal or stdin; starts it unless `start` is false. Returns
 * its id and state.
 */
export async function createTask(
  w: ShimWorld,
  ns: string,
  args: string[],
  o: {
    id?: string;
    memoryLimit?: number;
    env?: string[];
    editSpec?: (spec: Record<string, unknown>) => void;
    logPath?: string;
    start?: boolean;
  } = {},
): Promise<{ id: string; st: ShimState }> {
  const { id = newId(), editSpec, logPath, start = true, ...specOptions } = o;
  const spec = await makeSpec(args, { cgroupsPath: `/berth-test/${w.node}/${id}`, ...specOptions });
  editSpec?.(spec);
  const created = await w.client.create({
    namespace: ns,
    id,
    spec,
    rootfs: bindRootfs(w.rootfs),
    terminal: false,
    stdin: false,
    ...(logPath ? { logPath } : {}),
  });
  return { id, st: start ? await w.client.start({ namespace: ns, id }) : created };
}

export const tmp = tmpdir;

/** Waits (on the file's real content) until the CRI log holds a line with exactly this text. */
export async function waitForLog(path: string, text: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const body = await readFile(path, 'utf8').catch(() => '');
    if (body.split('\n').some((l) => parseCriLine(l)?.content === text)) return;
    if (Date.now() > deadline) throw new Error(`log ${path} never showed "${text}": ${body}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Prepares exec `execId` of task `id` running `args` (no terminal, no stdin), not started. */
export function prepareExec(w: ShimWorld, ns: string, id: string, execId: string, args: string[]) {
  return w.client.exec({
    namespace: ns,
    id,
    execId,
    process: { args, cwd: '/', env: ['PATH=/bin'] },
    terminal: false,
    stdin: false,
  });
}

/** SIGKILLs task `id`, waits for its exit and deletes it. */
export async function removeTask(w: ShimWorld, ns: string, id: string): Promise<void> {
  await w.client.kill({ namespace: ns, id, signal: 'SIGKILL', all: true });
  await w.client.wait({ namespace: ns, id });
  await w.client.delete({ namespace: ns, id });
}

/** The BerthError code a promise rejects with (undefined when it resolves). */
export async function codeOf(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
    return undefined;
  } catch (err) {
    if (err instanceof BerthError) return err.code;
    // A file system error by its errno code (ENOENT), so tests assert what they mean.
    const code = (err as NodeJS.ErrnoException).code;
    return typeof code === 'string' ? code : String(err);
  }
}

/** Removes the (empty) parent cgroups the tests' tasks were put under, in every hierarchy. */
export async function removeTestCgroups(node: string): Promise<void> {
  const { rmdir } = await import('node:fs/promises');
  const { parseMountinfo } = await import('../runtime/cgroups.js');
  const m = parseMountinfo(await readFile('/proc/self/mountinfo', 'utf8'));
  const roots = [...m.v1.map((x) => x.mountPoint), ...(m.v2 ? [m.v2.mountPoint] : [])];
  for (const r of roots) await rmdir(join(r, 'berth-test', node)).catch(() => undefined);
}

/** A shim agent in this process beside a world's agent process: same Redis, its own node and root. */
export interface LocalAgent {
  agent: ShimAgent;
  /** Its own Redis connection (the world's server). */
  redis: Redis;
  layout: HostLayout;
  /** Its own busybox snapshot (an agent mounts only snapshots of its state root). */
  rootfs: string;
  /** Closes the agent, then its Redis connection. */
  close(): Promise<void>;
}

/**
 * Starts a LocalAgent of node `node`, its state and run roots `local-state` and `local-run` under
 * `root` (default: beside the world's), with `options` added to the agent's (silent log, events
 * dropped unless `publish` is given).
 */
export async function startLocalAgent(
  w: ShimWorld,
  node: string,
  options: Partial<Omit<AgentOptions, 'redis' | 'node' | 'layout'>> & { root?: string } = {},
): Promise<LocalAgent> {
  const { root = join(w.stateRoot, '..'), ...agentOptions } = options;
  const redis = connectRedis(w.redisUrl);
  await redis.connect();
  const layout = hostLayout({ stateRoot: join(root, 'local-state'), runRoot: join(root, 'local-run') });
  const rootfs = await makeRootfs(join(layout.snapshots, '1', 'fs'));
  const agent = new ShimAgent({
    log: createLogger({ service: 'shim', node, level: 'silent' }),
    publish: () => undefined,
    ...agentOptions,
    redis,
    node,
    layout,
  });
  return {
    agent,
    redis,
    layout,
    rootfs,
    close: async () => {
      await agent.close();
      await redis.quit();
    },
  };
}
