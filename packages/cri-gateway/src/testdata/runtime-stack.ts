import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ImageApi, Service, serviceDefs } from '@berth/api';
import { call, connectNats, createLogger } from '@berth/kit';
import { natsAuthorization, principalLogins, redisUsers, withLogin } from '@berth/kit/acl-config';
import { startNats, startRedis, type TestCniNetwork, tempDir, testCniNetwork } from '@berth/testing';
import type { NatsConnection } from 'nats';
import { type Gateway, startGateway } from '../gateway.js';
import { CRI_NAMESPACE } from '../images/ports.js';
import { type CriClient, criClient } from './cri-client.js';

const REPO = join(import.meta.dirname, '..', '..', '..', '..');
const SERVICES = [
  ['snapshot-service', Service.snapshot],
  ['image-service', Service.image],
  ['shim', Service.shim],
  ['task-service', Service.task],
] as const;

/** The whole node for CRI runtime tests: NATS, Redis, the four services, the gateway in-process. */
export interface RuntimeStack {
  nc: NatsConnection;
  node: string;
  root: string;
  stateRoot: string;
  runRoot: string;
  gateway: Gateway;
  client: CriClient;
  /** The stack's private CNI network (its own conf dir, bridge, subnet and leases). */
  cni: TestCniNetwork;
  /** Builds the busybox test image (scripts/busybox-image.sh) and imports it into k8s.io. */
  importBusybox(name: string): Promise<void>;
  /** What each service printed (for failure messages). */
  output(): string;
  /**
   * SIGKILLs one service process, as a crash would, and starts it again (resolves once it answers);
   * `whileDown` runs between the two, while it is gone.
   */
  killAndRestart(name: (typeof SERVICES)[number][0], whileDown?: () => Promise<void>): Promise<void>;
  /**
   * Closes the in-process gateway and starts a new one on the same socket, with a new client;
   * `networkCollectMs` turns its periodic collection of orphan pod networks on (off by default).
   */
  restartGateway(o?: { networkCollectMs?: number }): Promise<void>;
  stop(): Promise<void>;
}

/** Starts the stack; the gateway builds its pause image from `pauseBinary` on first use. */
export async function startRuntimeStack(opts: {
  sandboxImage: string;
  pauseBinary?: string;
  /** More `services.shim` settings, written before the shim starts (e.g. a CNI conf of the test's own). */
  shimSettings?: (root: string, cni: TestCniNetwork) => Promise<Record<string, unknown>>;
}): Promise<RuntimeStack> {
  // Every service and the gateway log in as themselves, with only their role's permissions, as
  // under `berth up`; the test itself is the administrator.
  const node = `cri-${Math.random().toString(16).slice(2, 10)}`;
  const secret = () => randomBytes(32).toString('base64url');
  const secrets = { nats: secret(), redis: secret() };
  const admin = { user: 'admin', password: secret() };
  const [nats, redis] = await Promise.all([
    startNats({ jetstream: false, config: natsAuthorization(node, secrets, admin) }),
    startRedis({ appendonly: false, config: redisUsers(node, secrets) }),
  ]);
  const logins = new Map(principalLogins(node, secrets).map((l) => [l.principal as string, l]));
  const natsAs = (name: string) => {
    const l = logins.get(name);
    if (!l) throw new Error(`no login for ${name}`);
    return withLogin(nats.url, l.user, l.natsPassword);
  };
  const redisAs = (name: string) => {
    const l = logins.get(name);
    if (!l?.redisPassword) throw new Error(`no Redis login for ${name}`);
    return withLogin(redis.url, l.user, l.redisPassword);
  };
  const root = await tempDir('cri-runtime');
  const stateRoot = join(root, 'state');
  const runRoot = join(root, 'run');
  await mkdir(stateRoot, { recursive: true });
  const cni = testCniNetwork(root);
  const shim = { ...cni.settings, ...(opts.shimSettings ? await opts.shimSettings(root, cni) : {}) };
  await writeFile(join(root, 'config.json'), `${JSON.stringify({ services: { shim } })}\n`);
  const nc = await connectNats({
    url: withLogin(nats.url, admin.user, admin.password),
    name: 'cri-runtime-test',
  });
  const gatewayNc = await connectNats({ url: natsAs(Service.cri), name: 'cri-runtime-gateway' });
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('BERTH_')) env[k] = v;
  Object.assign(env, {
    BERTH_CONFIG: join(root, 'config.json'),
    BERTH_NODE_ID: node,
    BERTH_STATE_ROOT: stateRoot,
    BERTH_RUN_ROOT: runRoot,
    BERTH_LOG_LEVEL: 'warn',
    BERTH_SHUTDOWN_GRACE_MS: '3000',
  });
  const procs: { name: string; proc: ChildProcess }[] = [];
  let out = '';
  const launch = async (name: string, service: Service) => {
    const proc = spawn(process.execPath, [join(REPO, 'packages', name, 'dist', 'main.js')], {
      env: { ...env, BERTH_NATS_URL: natsAs(name), BERTH_REDIS_URL: redisAs(name) },
      cwd: root,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const keep = (b: Buffer) => {
      out = (out + `[${name}] ${b.toString()}`).slice(-50_000);
    };
    proc.stdout?.on('data', keep);
    proc.stderr?.on('data', keep);
    procs.push({ name, proc });
    const deadline = Date.now() + 30_000;
    for (;;) {
      if (proc.exitCode !== null) throw new Error(`${name} exited ${proc.exitCode}:\n${out}`);
      const info = await call(nc, serviceDefs[service], 'info', {}, { node, timeoutMs: 500 }).catch(
        () => undefined,
      );
      if (info?.pid === proc.pid) return;
      if (Date.now() > deadline) throw new Error(`${name} did not answer info:\n${out}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  let gateway: Gateway | undefined;
  let client: CriClient | undefined;
  const stop = async () => {
    client?.close();
    await gateway?.close(1000);
    for (const { proc } of [...procs].reverse()) {
      if (proc.exitCode !== null || proc.signalCode !== null) continue;
      const exited = once(proc, 'exit');
      proc.kill('SIGTERM');
      await exited;
    }
    sweep(stateRoot, root);
    await cni.close();
    await nc.close().catch(() => undefined);
    await gatewayNc.close().catch(() => undefined);
    await Promise.all([nats.stop(), redis.stop()]);
    execFileSync('rm', ['-rf', root]);
  };
  // The periodic collection of pod networks is off unless a test turns it on (restartGateway):
  // tests that make an orphan network on purpose must find it still there.
  const openGateway = async (networkCollectMs = 0) => {
    gateway = await startGateway({
      networkCollectMs,
      nc: gatewayNc,
      node,
      socket: join(runRoot, 'cri.sock'),
      runRoot,
      snapshotsDir: join(stateRoot, 'snapshots'),
      containersDir: join(stateRoot, 'containers'),
      sandboxImage: opts.sandboxImage,
      ...(opts.pauseBinary ? { pauseBinary: opts.pauseBinary } : {}),
      log: createLogger({ service: 'cri-gateway', node, level: 'silent' }),
    });
    client = criClient(gateway.socket);
  };
  try {
    for (const [name, service] of SERVICES) await launch(name, service);
    await openGateway();
  } catch (err) {
    await stop();
    throw err;
  }
  const stack: RuntimeStack = {
    nc,
    node,
    root,
    stateRoot,
    runRoot,
    gateway: gateway as Gateway,
    client: client as CriClient,
    cni,
    async killAndRestart(name, whileDown) {
      const i = procs.findIndex(
        (p) => p.name === name && p.proc.exitCode === null && p.proc.signalCode === null,
      );
      const entry = procs[i];
      const service = SERVICES.find(([n]) => n === name)?.[1];
      if (!entry || !service) throw new Error(`no running ${name}`);
      const exited = once(entry.proc, 'exit');
      entry.proc.kill('SIGKILL');
      await exited;
      procs.splice(i, 1);
      await whileDown?.();
      await launch(name, service);
    },
    async restartGateway(o = {}) {
      client?.close();
      await gateway?.close(1000);
      await openGateway(o.networkCollectMs);
      stack.gateway = gateway as Gateway;
      stack.client = client as CriClient;
    },
    async importBusybox(name) {
      const tar = join(root, 'busybox.tar');
      execFileSync('bash', [join(REPO, 'scripts', 'busybox-image.sh'), tar, name]);
      await call(
        nc,
        ImageApi,
        'import',
        { path: tar, name },
        {
          node,
          namespace: CRI_NAMESPACE,
          timeoutMs: 120_000,
        },
      );
    },
    output: () => out,
    stop,
  };
  return stack;
}

/** Test cleanup: deletes whatever runc still runs under the state root and unmounts leftovers. */
function sweep(stateRoot: string, root: string): void {
  const base = join(stateRoot, 'runc');
  for (const ns of existsSync(base) ? readdirSync(base) : []) {
    let list: { id: string }[] = [];
    try {
      list =
        JSON.parse(
          execFileSync('runc', ['--root', join(base, ns), 'list', '-f', 'json']).toString() || '[]',
        ) ?? [];
    } catch {
      continue;
    }
    for (const c of list) {
      try {
        execFileSync('runc', ['--root', join(base, ns), 'delete', '-f', c.id], { stdio: 'ignore' });
      } catch {
        // already gone
      }
    }
  }
  const mounts = readFileSync('/proc/self/mounts', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[1] ?? '')
    .filter((m) => m.startsWith(`${root}/`))
    .sort((a, b) => b.length - a.length);
  for (const m of mounts) {
    try {
      execFileSync('umount', ['-l', m], { stdio: 'ignore' });
    } catch {
      // not mounted any more
    }
  }
}

/**
 * runc's containers in the CRI namespace under a state root (ids): the directories holding a
 * state.json, as runc keeps them. Read directly rather than with `runc list`, which fails when a
 * container's directory goes between its readdir and its stat, as a background removal does.
 */
export function runcIds(stateRoot: string): string[] {
  const dir = join(stateRoot, 'runc', CRI_NAMESPACE);
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { withFileTypes: true })
    .filter((e) => e.isDirectory() && existsSync(join(dir, e.name, 'state.json')))
    .map((e) => e.name);
}
