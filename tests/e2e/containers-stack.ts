/**
 * The services a container needs (image, snapshot, shim, task), each started directly from its
 * built main.js against test NATS and Redis, so tests can SIGKILL and restart one precisely.
 * Also builds a small busybox image (OCI layout tar) from the host's static busybox.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream, existsSync, readdirSync, readFileSync, type WriteStream } from 'node:fs';
import { chmod, mkdir, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  BerthError,
  Code,
  CriApi,
  ImageApi,
  type ImageRecord,
  type ServiceDef,
  ShimApi,
  SnapshotApi,
  TaskApi,
} from '@berth/api';
import { call } from '@berth/kit';
import {
  startNats,
  startRedis,
  startRegistry,
  type TestCniNetwork,
  type TestServer,
  tempDir,
  testCniNetwork,
} from '@berth/testing';
import { connect, type NatsConnection } from 'nats';
import { REPO_ROOT, type RunResult, runBerth } from '../harness/berth.js';

export const SERVICES = ['image-service', 'snapshot-service', 'shim', 'task-service'] as const;
/** A service the stack can run: the four above, and the CRI gateway when asked for (`cri`). */
export type ServiceName = (typeof SERVICES)[number] | 'cri-gateway';

/** The contract of each service (its `info` tells that a process answers). */
export const SERVICE_APIS: Record<ServiceName, ServiceDef> = {
  'image-service': ImageApi,
  'snapshot-service': SnapshotApi,
  shim: ShimApi,
  'task-service': TaskApi,
  'cri-gateway': CriApi,
};
const TOKENS = SERVICE_APIS;

/** A running set of services in one isolated installation. */
export interface ContainerStack {
  nats: TestServer & { restart(): Promise<void> };
  redis: TestServer & { restart(): Promise<void> };
  nc: NatsConnection;
  node: string;
  root: string;
  stateRoot: string;
  runRoot: string;
  env: NodeJS.ProcessEnv;
  /** The stack's private CNI network (conf dir, bridge, subnet, leases): never the host's. */
  cni: TestCniNetwork;
  procs: Map<ServiceName, ChildProcess>;
  /** The services this stack runs (SERVICES, plus the CRI gateway with `cri`). */
  services: readonly ServiceName[];
  /** The CRI gateway's socket (<runRoot>/cri.sock), when the stack runs it. */
  criSocket?: string;
  /** Output of each service so far (for failure messages). */
  output(name: ServiceName): string;
  start(name: ServiceName): Promise<void>;
  /** Starts one more replica of a service (stopped by stop()); resolves once it answered `info`. */
  startReplica(name: ServiceName): Promise<ChildProcess>;
  /** Sends a signal and waits for the process to exit. */
  kill(name: ServiceName, signal: NodeJS.Signals): Promise<void>;
  berth(args: string[], opts?: { timeoutMs?: number; input?: string }): Promise<RunResult>;
  /**
   * Gets the test busybox image onto the node: image-service `import` as `name`, or, while import
   * is not built, a push to a local registry (skopeo) and a pull. Use the returned record's name.
   */
  importBusybox(name?: string): Promise<ImageRecord>;
  stop(): Promise<void>;
}

/** Polls until `check` is truthy (bounded); fails naming `what`. */
export async function until<T>(what: string, check: () => Promise<T> | T, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await check();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
}

/** The code a snapshot stat on the stack's node fails with, or "ok". */
export async function snapshotState(s: Pick<ContainerStack, 'nc' | 'node'>, key: string): Promise<string> {
  try {
    await call(s.nc, SnapshotApi, 'stat', { key }, { node: s.node, timeoutMs: 5_000 });
    return 'ok';
  } catch (err) {
    if (err instanceof BerthError) return err.code;
    throw err;
  }
}

/** Starts NATS, Redis and the four services (and the CRI gateway with `cri`); `only` limits which start. */
export async function startContainerStack(
  opts: {
    only?: ServiceName[];
    /** Also run the CRI gateway (after the four services), on <runRoot>/cri.sock. */
    cri?: boolean;
    config?: Record<string, unknown>;
    /** Put the state root on a tmpfs of this many MiB (a disk a test may fill; unmounted by stop()). */
    stateTmpfsMb?: number;
    /**
     * Also write everything each service prints to `<logDir>/<service>.log` (every process of it,
     * restarts and replicas too, each start marked by a line), and, at stop(), what nats-server and
     * redis-server printed to `nats-server.log` and `redis-server.log`. The directory must exist and
     * lie outside the stack's root, which stop() removes: the caller keeps or removes it.
     */
    logDir?: string;
    /** The services' log level (BERTH_LOG_LEVEL): STACK_LOG_LEVEL, else `warn`, unless set. */
    logLevel?: string;
  } = {},
): Promise<ContainerStack> {
  const [nats, redis] = await Promise.all([startNats({ jetstream: false }), startRedis()]);
  const root = await tempDir('ctr');
  const stateRoot = join(root, 'state');
  const runRoot = join(root, 'run');
  await mkdir(stateRoot, { recursive: true });
  if (opts.stateTmpfsMb)
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${opts.stateTmpfsMb}m,mode=0755`, 'tmpfs', stateRoot]);
  await mkdir(runRoot, { recursive: true });
  const node = `ctr-${randomBytes(4).toString('hex')}`;
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('BERTH_')) env[k] = v;
  Object.assign(env, {
    BERTH_CONFIG: join(root, 'config.json'),
    BERTH_NATS_URL: nats.url,
    BERTH_REDIS_URL: redis.url,
    BERTH_NODE_ID: node,
    BERTH_STATE_ROOT: stateRoot,
    BERTH_RUN_ROOT: runRoot,
    // STACK_LOG_LEVEL=info shows what the services do (a failing chaos run, say).
    BERTH_LOG_LEVEL: opts.logLevel ?? process.env.STACK_LOG_LEVEL ?? 'warn',
    BERTH_SHUTDOWN_GRACE_MS: '3000',
  });
  // Containers run on the bridge network by default: the shim gets a CNI network of its own.
  const cni = testCniNetwork(root);
  const config = { ...opts.config } as { services?: Record<string, Record<string, unknown>> };
  config.services = { ...config.services, shim: { ...cni.settings, ...config.services?.shim } };
  await writeFile(join(root, 'config.json'), `${JSON.stringify(config)}\n`);
  const nc = await connect({ servers: nats.url });
  const procs = new Map<ServiceName, ChildProcess>();
  const outputs = new Map<ServiceName, string>();
  let registry: Awaited<ReturnType<typeof startRegistry>> | undefined;

  const extras: ChildProcess[] = [];
  /** Per service, its log file under opts.logDir (one stream for all its processes, in order). */
  const logFiles = new Map<ServiceName, WriteStream>();
  const logFile = (name: ServiceName): WriteStream | undefined => {
    if (!opts.logDir) return undefined;
    let f = logFiles.get(name);
    if (!f) {
      f = createWriteStream(join(opts.logDir, `${name}.log`), { flags: 'a' });
      // A log that cannot be written (a full disk, say) is given up, not the run it serves.
      f.on('error', (err) => process.stderr.write(`${name}'s log in ${opts.logDir}: ${err.message}\n`));
      logFiles.set(name, f);
    }
    return f;
  };
  async function launch(name: ServiceName): Promise<ChildProcess> {
    const main = join(REPO_ROOT, 'packages', name, 'dist', 'main.js');
    const p = spawn(process.execPath, [main], { env, cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    const file = logFile(name);
    // A replica stop() does not wait for may still print after the file was closed.
    const log = (b: Buffer | string) => {
      if (file && !file.writableEnded && !file.destroyed) file.write(b);
    };
    log(`--- ${name} pid ${p.pid} started at ${new Date().toISOString()} ---\n`);
    p.once('exit', (code, signal) =>
      log(`--- ${name} pid ${p.pid} exited (${code ?? signal}) at ${new Date().toISOString()} ---\n`),
    );
    const keep = (b: Buffer) => {
      log(b);
      const s = (outputs.get(name) ?? '') + b.toString();
      outputs.set(name, s.length > 50_000 ? s.slice(-25_000) : s);
    };
    p.stdout?.on('data', keep);
    p.stderr?.on('data', keep);
    const svc = TOKENS[name];
    const from = (outputs.get(name) ?? '').length;
    await until(`${name} to answer info`, async () => {
      if (p.exitCode !== null) throw new Error(`${name} exited ${p.exitCode}: ${outputs.get(name) ?? ''}`);
      const info = await call(nc, svc, 'info', {}, { node, timeoutMs: 500 });
      return info.pid === p.pid;
    }).catch((err: Error) => {
      // What this process printed (warnings and errors), to say why it did not answer.
      throw new Error(
        `${err.message}\n${name} (pid ${p.pid}) printed: ${(outputs.get(name) ?? '').slice(from)}`,
      );
    });
    return p;
  }

  const stack: ContainerStack = {
    nats,
    redis,
    nc,
    node,
    root,
    stateRoot,
    runRoot,
    env,
    cni,
    procs,
    services: opts.only ?? [...SERVICES, ...(opts.cri ? (['cri-gateway'] as const) : [])],
    ...(opts.cri ? { criSocket: join(runRoot, 'cri.sock') } : {}),
    output: (name) => outputs.get(name) ?? '',
    async start(name) {
      procs.set(name, await launch(name));
    },
    async startReplica(name) {
      const p = await launch(name);
      extras.push(p);
      return p;
    },
    async kill(name, signal) {
      const p = procs.get(name);
      if (!p || p.exitCode !== null || p.signalCode !== null) return;
      const exited = new Promise((r) => p.once('exit', r));
      p.kill(signal);
      await exited;
    },
    berth: (args, o = {}) => runBerth(args, { env, ...o }),
    async importBusybox(name = 'berth.test/busybox:latest') {
      try {
        return await importBusyboxTo(nc, { dir: root, node, namespace: 'default', name });
      } catch (err) {
        if (!(err instanceof BerthError) || err.code !== Code.UNIMPLEMENTED) throw err;
      }
      registry ??= await startRegistry();
      const ref = `${registry.host}/${name.split('/').pop()}`;
      await pushBusybox(root, ref);
      return (await call(nc, ImageApi, 'pull', { ref }, { node, timeoutMs: 120_000 })).image;
    },
    async stop() {
      // Containers outlive the services by design: remove them first, then sweep runc's leftovers.
      if (procs.get('task-service')?.exitCode === null) {
        await stack
          .berth(['rm', '-f', ...(await stack.berth(['ps', '-aq'])).stdout.split(/\s+/).filter(Boolean)])
          .catch(() => undefined);
      }
      for (const p of extras) if (p.exitCode === null && p.signalCode === null) p.kill('SIGTERM');
      const order: ServiceName[] = [...SERVICES, 'cri-gateway'];
      for (const n of order.reverse()) await stack.kill(n, 'SIGTERM').catch(() => undefined);
      sweepRunc(stateRoot);
      unmountUnder(root);
      await cni.close();
      await nc.close().catch(() => undefined);
      if (opts.logDir) {
        const dir = opts.logDir;
        await Promise.all([
          ...[...logFiles.values()].map((f) => new Promise((r) => f.end(r))),
          writeFile(join(dir, 'nats-server.log'), nats.output()).catch(() => undefined),
          writeFile(join(dir, 'redis-server.log'), redis.output()).catch(() => undefined),
        ]);
      }
      await Promise.all([nats.stop(), redis.stop(), registry?.stop()]);
      await rm(root, { recursive: true, force: true }).catch(() => undefined);
    },
  };
  try {
    for (const s of stack.services) await stack.start(s);
  } catch (err) {
    await stack.stop();
    throw err;
  }
  return stack;
}

/** Kills and deletes every container runc knows under this state root (test cleanup only). */
export function sweepRunc(stateRoot: string): void {
  const base = join(stateRoot, 'runc');
  if (!existsSync(base)) return;
  // The shim keeps one runc root per namespace: runc/<ns>/.
  for (const ns of readdirSync(base)) {
    const runcRoot = join(base, ns);
    let list: { id: string }[] = [];
    try {
      list =
        JSON.parse(execFileSync('runc', ['--root', runcRoot, 'list', '-f', 'json']).toString() || '[]') ?? [];
    } catch {
      continue;
    }
    for (const c of list) {
      try {
        execFileSync('runc', ['--root', runcRoot, 'delete', '-f', c.id], { stdio: 'ignore' });
      } catch {
        // already gone
      }
    }
  }
}

/** Lazily unmounts whatever is still mounted below `dir` (rootfs overlays of killed tests). */
export function unmountUnder(dir: string): void {
  const mounts = readFileSync('/proc/self/mounts', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[1] ?? '')
    .filter((m) => m.startsWith(`${dir}/`))
    .sort((a, b) => b.length - a.length);
  for (const m of mounts) {
    try {
      execFileSync('umount', ['-l', m], { stdio: 'ignore' });
    } catch {
      // not mounted any more
    }
  }
}

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** Where importBusyboxTo puts the busybox image; `dir` is where its tar is built (or was). */
export interface BusyboxImport {
  dir: string;
  node: string;
  namespace: string;
  name: string;
}

/** Imports the busybox image with image-service `import` into a namespace of a node; returns it. */
export async function importBusyboxTo(nc: NatsConnection, to: BusyboxImport): Promise<ImageRecord> {
  const tar = await busyboxLayoutTar(to.dir);
  const reply = await call(
    nc,
    ImageApi,
    'import',
    { path: tar, name: to.name },
    { node: to.node, namespace: to.namespace, timeoutMs: 120_000 },
  );
  const img = reply.images[0];
  if (!img) throw new Error(`import of ${to.name} returned no image`);
  return img;
}

/** Builds the busybox image in `dir` and copies it into a registry as `ref`; returns the tar. */
export async function pushBusybox(dir: string, ref: string): Promise<string> {
  const tar = await busyboxLayoutTar(dir);
  execFileSync('skopeo', [
    'copy',
    '--quiet',
    '--dest-tls-verify=false',
    `oci-archive:${tar}`,
    `docker://${ref}`,
  ]);
  return tar;
}

/**
 * Builds an OCI image-layout tar holding a one-layer busybox image: /bin/busybox with applet
 * links, /etc/passwd and /etc/group (root, nobody, a "www" user), Cmd ["sh"].
 */
export async function busyboxLayoutTar(dir: string): Promise<string> {
  const out = join(dir, 'busybox-oci.tar');
  if (existsSync(out)) return out;
  const work = join(dir, `img-${randomBytes(3).toString('hex')}`);
  const rootfs = join(work, 'rootfs');
  await mkdir(join(rootfs, 'bin'), { recursive: true });
  await mkdir(join(rootfs, 'etc'), { recursive: true });
  await mkdir(join(rootfs, 'tmp'), { recursive: true });
  await chmod(join(rootfs, 'tmp'), 0o1777);
  for (const d of ['proc', 'sys', 'dev', 'root', 'home/www'])
    await mkdir(join(rootfs, d), { recursive: true });
  execFileSync('cp', ['/usr/bin/busybox', join(rootfs, 'bin', 'busybox')]);
  const applets = execFileSync('/usr/bin/busybox', ['--list']).toString().split('\n').filter(Boolean);
  for (const a of applets) if (a !== 'busybox') await symlink('busybox', join(rootfs, 'bin', a));
  await writeFile(
    join(rootfs, 'etc', 'passwd'),
    'root:x:0:0:root:/root:/bin/sh\nwww:x:33:33:www:/home/www:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n',
  );
  await writeFile(join(rootfs, 'etc', 'group'), 'root:x:0:\nwww:x:33:\nstaff:x:50:www\nnogroup:x:65534:\n');
  const layout = join(work, 'layout');
  const blobs = join(layout, 'blobs', 'sha256');
  await mkdir(blobs, { recursive: true });
  const layerPath = join(work, 'layer.tar');
  execFileSync('tar', ['--numeric-owner', '--owner=0', '--group=0', '-C', rootfs, '-cf', layerPath, '.']);
  const layer = readFileSync(layerPath);
  const layerDigest = sha256(layer);
  await writeFile(join(blobs, layerDigest), layer);
  const config = Buffer.from(
    JSON.stringify({
      architecture: 'amd64',
      os: 'linux',
      config: { Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'], Cmd: ['sh'] },
      rootfs: { type: 'layers', diff_ids: [`sha256:${layerDigest}`] },
      history: [{ created_by: 'berth test busybox' }],
    }),
  );
  const configDigest = sha256(config);
  await writeFile(join(blobs, configDigest), config);
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: {
        mediaType: 'application/vnd.oci.image.config.v1+json',
        digest: `sha256:${configDigest}`,
        size: config.length,
      },
      layers: [
        {
          mediaType: 'application/vnd.oci.image.layer.v1.tar',
          digest: `sha256:${layerDigest}`,
          size: layer.length,
        },
      ],
    }),
  );
  const manifestDigest = sha256(manifest);
  await writeFile(join(blobs, manifestDigest), manifest);
  await writeFile(join(layout, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
  await writeFile(
    join(layout, 'index.json'),
    JSON.stringify({
      schemaVersion: 2,
      manifests: [
        {
          mediaType: 'application/vnd.oci.image.manifest.v1+json',
          digest: `sha256:${manifestDigest}`,
          size: manifest.length,
          platform: { architecture: 'amd64', os: 'linux' },
        },
      ],
    }),
  );
  execFileSync('tar', ['-C', layout, '-cf', out, ...(await readdir(layout))]);
  await rm(work, { recursive: true, force: true });
  return out;
}
