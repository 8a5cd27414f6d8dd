import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ImageApi, Service, SnapshotApi, serviceDefs, TaskApi } from '@berth/api';
import { type RegistryProxy, startProxy } from '@berth/image-service/testing';
import { call, connectNats, createLogger } from '@berth/kit';
import { startNats, startRedis, startRegistry, type TestServer, tempDir } from '@berth/testing';
import type { ServiceError } from '@grpc/grpc-js';
import type { NatsConnection } from 'nats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Gateway, startGateway } from './gateway.js';
import type { CriImage } from './images/cri-image.js';
import { type CriClient, criClient } from './testdata/cri-client.js';

// The CRI ImageService end to end: a grpc-js client on the unix socket, the gateway in-process,
// the real image-service, snapshot-service and task-service processes, real NATS, Redis and registries.

const REPO = join(import.meta.dirname, '..', '..', '..');
const node = `cri-${Math.random().toString(16).slice(2, 10)}`;
const log = createLogger({ service: 'cri-gateway', node, level: 'silent' });

let nats: TestServer;
let redis: TestServer;
let registry: TestServer & { host: string };
let secured: TestServer & { host: string };
let nc: NatsConnection;
let root: string;
let stateRoot: string;
let gateway: Gateway;
let client: CriClient;
let proxy: RegistryProxy | undefined;
const procs: { name: string; proc: ChildProcess; out: () => string }[] = [];

/** The pushed image as the registry serves it: manifest digest and config digest. */
let pushed: { manifest: string; config: string };
let ref: string;

/** A bcrypt htpasswd line made with glibc's crypt (cost 4 keeps the test fast). */
function htpasswdLine(user: string, password: string): string {
  const hash = execFileSync('python3', [
    '-W',
    'ignore',
    '-c',
    'import crypt,sys; print(crypt.crypt(sys.argv[1], crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16)))',
    password,
  ])
    .toString()
    .trim();
  return `${user}:${hash}\n`;
}

/** Starts a built service (dist/main.js) and resolves once it answers `info` with its own pid. */
async function startService(
  name: 'image-service' | 'snapshot-service' | 'task-service',
  service: Service,
): Promise<void> {
  const main = join(REPO, 'packages', name, 'dist', 'main.js');
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('BERTH_')) env[k] = v;
  Object.assign(env, {
    BERTH_CONFIG: join(root, 'config.json'),
    BERTH_NATS_URL: nats.url,
    BERTH_REDIS_URL: redis.url,
    BERTH_NODE_ID: node,
    BERTH_STATE_ROOT: stateRoot,
    BERTH_RUN_ROOT: join(root, 'run'),
    BERTH_LOG_LEVEL: 'warn',
  });
  const proc = spawn(process.execPath, [main], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const keep = (b: Buffer) => {
    out += b.toString();
  };
  proc.stdout?.on('data', keep);
  proc.stderr?.on('data', keep);
  procs.push({ name, proc, out: () => out });
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
}

/** Fetches the manifest the registry serves for a tag: its digest and the config digest it names. */
async function manifestOf(
  host: string,
  repo: string,
  tag: string,
): Promise<{ manifest: string; config: string }> {
  const res = await fetch(`http://${host}/v2/${repo}/manifests/${tag}`, {
    headers: { accept: 'application/vnd.oci.image.manifest.v1+json' },
  });
  expect(res.status).toBe(200);
  const body = (await res.json()) as { config: { digest: string } };
  return { manifest: res.headers.get('docker-content-digest') ?? '', config: body.config.digest };
}

function grpcError(p: Promise<unknown>): Promise<ServiceError> {
  return p.then(
    () => {
      throw new Error('expected the call to fail');
    },
    (e: unknown) => e as ServiceError,
  );
}

const status = (image: string, verbose = false) =>
  client.unary<{ image: CriImage | null; info: Record<string, string> }>(client.image, 'ImageStatus', {
    image: { image },
    verbose,
  });
const list = (filter?: string) =>
  client.unary<{ images: CriImage[] }>(
    client.image,
    'ListImages',
    filter ? { filter: { image: { image: filter } } } : {},
  );
const pull = (image: string, auth?: Record<string, string>) =>
  client.unary<{ image_ref: string }>(client.image, 'PullImage', {
    image: { image },
    ...(auth ? { auth } : {}),
  });

beforeAll(async () => {
  [nats, redis, registry, secured] = await Promise.all([
    startNats({ jetstream: false }),
    startRedis({ appendonly: false }),
    startRegistry(),
    startRegistry({ htpasswd: htpasswdLine('alice', 's3cret') }),
  ]);
  root = await tempDir('cri-images');
  stateRoot = join(root, 'state');
  await writeFile(join(root, 'config.json'), '{}\n');
  nc = await connectNats({ url: nats.url, name: 'cri-images-test' });

  const tar = join(root, 'busybox.tar');
  execFileSync('bash', [join(REPO, 'scripts', 'busybox-image.sh'), tar, 'localhost/busybox:v1']);
  const push = (dest: string, creds?: string) =>
    execFileSync('skopeo', [
      'copy',
      '--quiet',
      '--dest-tls-verify=false',
      ...(creds ? ['--dest-creds', creds] : []),
      `oci-archive:${tar}`,
      `docker://${dest}`,
    ]);
  push(`${registry.host}/busybox:v1`);
  push(`${secured.host}/private/busybox:v1`, 'alice:s3cret');
  pushed = await manifestOf(registry.host, 'busybox', 'v1');
  // Two variants that run as a numeric and a named user (umoci edits the config, skopeo pushes).
  const layout = join(root, 'layout');
  execFileSync('skopeo', ['copy', '--quiet', `oci-archive:${tar}`, `oci:${layout}:v1`]);
  for (const [tag, user] of [
    ['uid', '1000:1000'],
    ['named', 'www'],
  ] as const) {
    execFileSync('umoci', ['config', '--image', `${layout}:v1`, '--config.user', user, '--tag', tag]);
    execFileSync('skopeo', [
      'copy',
      '--quiet',
      '--dest-tls-verify=false',
      `oci:${layout}:${tag}`,
      `docker://${registry.host}/busybox:${tag}`,
    ]);
  }
  ref = `${registry.host}/busybox:v1`;

  await startService('snapshot-service', Service.snapshot);
  await startService('image-service', Service.image);
  // RemoveImage's in-use check asks the task-service (which owns the container records).
  await startService('task-service', Service.task);
  const runRoot = join(root, 'run');
  gateway = await startGateway({
    nc,
    node,
    socket: join(runRoot, 'cri', 'cri.sock'),
    runRoot,
    snapshotsDir: join(stateRoot, 'snapshots'),
    containersDir: join(root, 'containers'),
    log,
  });
  client = criClient(gateway.socket);
}, 120_000);

afterAll(async () => {
  client?.close();
  await gateway?.close(1000);
  await proxy?.stop();
  for (const { proc } of procs.reverse()) {
    if (proc.exitCode !== null || proc.signalCode !== null) continue;
    const exited = once(proc, 'exit');
    proc.kill('SIGTERM');
    await exited;
  }
  await nc?.close();
  await Promise.all([nats?.stop(), redis?.stop(), registry?.stop(), secured?.stop()]);
  if (root) execFileSync('rm', ['-rf', root]);
});

describe('CRI ImageService', () => {
  it('pulls an image (unpacked) and answers its id as image_ref, in the k8s.io namespace', async () => {
    const reply = await pull(ref);
    expect(reply.image_ref).toBe(pushed.config);
    const inK8s = await call(
      nc,
      ImageApi,
      'get',
      { name: ref },
      {
        node,
        namespace: 'k8s.io',
        timeoutMs: 5000,
      },
    );
    expect(inK8s.chainId).toMatch(/^sha256:[a-f0-9]{64}$/);
    const inDefault = await call(nc, ImageApi, 'list', {}, { node, timeoutMs: 5000 });
    expect(inDefault.images).toEqual([]);
  });

  it('reports the image in ImageStatus and ListImages with containerd-style fields', async () => {
    const expected: CriImage = {
      id: pushed.config,
      repo_tags: [ref],
      repo_digests: [`${registry.host}/busybox@${pushed.manifest}`],
      size: expect.stringMatching(/^[1-9][0-9]+$/) as unknown as string,
      uid: null,
      username: '',
      spec: { image: pushed.config, annotations: {} },
      pinned: false,
    };
    // The client fills the ImageSpec fields berth leaves unset with their defaults.
    Object.assign(expected.spec, { user_specified_image: '', runtime_handler: '', image_ref: '' });
    const s = await status(ref, true);
    expect(s.image).toEqual(expected);
    expect(JSON.parse(s.info.info ?? '{}')).toMatchObject({ name: ref, configDigest: pushed.config });
    expect((await status(ref)).info).toEqual({});
    // The same image by id, by short id and by repo digest.
    for (const spec of [
      pushed.config,
      pushed.config.slice(7, 19),
      `${registry.host}/busybox@${pushed.manifest}`,
    ]) {
      expect((await status(spec)).image?.id, spec).toBe(pushed.config);
    }
    expect((await list()).images).toEqual([expected]);
    expect((await list(ref)).images).toEqual([expected]);
    expect((await list(`${registry.host}/busybox:other`)).images).toEqual([]);
    const streamed = await client.stream<{ images: CriImage[] }>(client.image, 'StreamImages', {});
    expect(streamed.status.code).toBe(0);
    expect(streamed.messages).toEqual([{ images: [expected] }]);
  });

  it('answers ImageStatus of an absent image with the image unset, not an error', async () => {
    expect(await status(`${registry.host}/busybox:absent`)).toEqual({ image: null, info: {} });
    expect((await status(`sha256:${'0'.repeat(64)}`)).image).toBeNull();
  });

  it('fails a pull of a missing tag NOT_FOUND naming the reference', async () => {
    const err = await grpcError(pull(`${registry.host}/busybox:missing`));
    expect(err.code).toBe(5);
    expect(err.details).toContain(`${registry.host}/busybox:missing`);
    const empty = await grpcError(pull(''));
    expect(empty.code).toBe(3);
  });

  it('pulls from a registry requiring basic auth with username/password or auth', async () => {
    const priv = `${secured.host}/private/busybox:v1`;
    const anonymous = await grpcError(pull(priv));
    expect(anonymous.code).toBe(16);
    expect(anonymous.details).toContain(priv);
    const wrong = await grpcError(pull(priv, { username: 'alice', password: 'nope' }));
    expect(wrong.code).toBe(16);
    expect((await pull(priv, { username: 'alice', password: 's3cret' })).image_ref).toBe(pushed.config);
    const auth = Buffer.from('alice:s3cret').toString('base64');
    expect((await pull(priv, { auth })).image_ref).toBe(pushed.config);
    const bad = await grpcError(pull(priv, { auth: 'not base64 at all!' }));
    expect(bad.code).toBe(3);
    expect(bad.details).toContain(priv);
    // Same id as the first pull: one CRI image with two tags and two repo digests.
    const s = await status(priv);
    expect(s.image?.repo_tags).toEqual([ref, priv].sort());
    expect(s.image?.repo_digests).toEqual(
      [
        `${registry.host}/busybox@${pushed.manifest}`,
        `${secured.host}/private/busybox@${pushed.manifest}`,
      ].sort(),
    );
    expect((await list()).images).toHaveLength(1);
  });

  it('reports ImageFsInfo over the snapshots directory: blobs plus unpacked layers', async () => {
    const before = BigInt(Date.now()) * 1_000_000n;
    const r = await client.unary<{
      image_filesystems: {
        timestamp: string;
        fs_id: { mountpoint: string };
        used_bytes: { value: string };
        inodes_used: { value: string };
      }[];
      container_filesystems: unknown[];
    }>(client.image, 'ImageFsInfo', {});
    expect(r.image_filesystems).toHaveLength(1);
    const fs = r.image_filesystems[0];
    expect(fs?.fs_id.mountpoint).toBe(join(stateRoot, 'snapshots'));
    expect(BigInt(fs?.timestamp ?? 0)).toBeGreaterThanOrEqual(before);
    const content = await call(nc, ImageApi, 'usage', {}, { node, timeoutMs: 5000 });
    // The unpacked busybox layer (a 1-2 MB binary and ~400 links) comes on top of the blobs.
    expect(Number(fs?.used_bytes.value)).toBeGreaterThan(content.bytes + 500_000);
    expect(Number(fs?.inodes_used.value)).toBeGreaterThan(content.inodes + 100);
    expect(r.container_filesystems).toEqual([]);
  });

  it('removes an image with all its tags, idempotently', async () => {
    const priv = `${secured.host}/private/busybox:v1`;
    const extra = `${registry.host}/another/name:latest`;
    await call(
      nc,
      ImageApi,
      'tag',
      { source: ref, target: extra },
      { node, namespace: 'k8s.io', timeoutMs: 5000 },
    );
    expect((await status(extra)).image?.repo_tags).toHaveLength(3);
    await client.unary(client.image, 'RemoveImage', { image: { image: ref } });
    for (const name of [ref, priv, extra, pushed.config]) expect((await status(name)).image, name).toBeNull();
    expect((await list()).images).toEqual([]);
    await client.unary(client.image, 'RemoveImage', { image: { image: ref } });
    await client.unary(client.image, 'RemoveImage', { image: { image: `${registry.host}/never:pulled` } });
    const streamed = await client.stream(client.image, 'StreamImages', {});
    expect([streamed.messages, streamed.status.code]).toEqual([[], 0]);
  });

  it('reports the config User as uid when numeric and username otherwise', async () => {
    const numeric = `${registry.host}/busybox:uid`;
    const named = `${registry.host}/busybox:named`;
    await pull(numeric);
    await pull(named);
    expect((await status(numeric)).image).toMatchObject({ uid: { value: '1000' }, username: '' });
    expect((await status(named)).image).toMatchObject({ uid: null, username: 'www' });
    expect((await list()).images.map((i) => i.repo_tags)).toEqual(
      expect.arrayContaining([[numeric], [named]]),
    );
    for (const image of [numeric, named])
      await client.unary(client.image, 'RemoveImage', { image: { image } });
    expect((await list()).images).toEqual([]);
  });

  it('removes an image a container uses, as containerd; the container keeps its root filesystem', async () => {
    const image = `${registry.host}/busybox:uid`;
    await pull(image);
    const opts = { node, namespace: 'k8s.io', timeoutMs: 60_000 };
    // Left to the stack's teardown: removing a container asks its node's shim, which this stack lacks.
    const c = await call(
      nc,
      TaskApi,
      'create-container',
      { image, name: 'uses-the-image', cmd: ['true'], labels: { 'io.berth.cri.kind': 'container' } },
      opts,
    );
    await client.unary(client.image, 'RemoveImage', { image: { image } });
    expect((await status(image)).image).toBeNull();
    // A whole collection ran (the snapshot-service's too), and left the container what it uses.
    expect((await call(nc, ImageApi, 'gc', {}, opts)).snapshots).toBe('done');
    const still = await call(nc, TaskApi, 'get-container', { id: c.id }, opts);
    expect(still.container.image.name).toBe(image);
    const { mounts } = await call(nc, SnapshotApi, 'mounts', { key: c.snapshotKey }, opts);
    expect(mounts.length).toBeGreaterThan(0);
  });

  it('uses registry_token as a bearer token as is, and username/password through the token flow', async () => {
    proxy = await startProxy({ upstream: registry.url, bearer: { users: { carol: 'pw' } } });
    const priv = `${proxy.host}/busybox:v1`;
    expect((await grpcError(pull(priv))).code).toBe(16);
    const res = await fetch(`${proxy.url}/token?service=berth-test&scope=repository:busybox:pull`, {
      headers: { authorization: `Basic ${Buffer.from('carol:pw').toString('base64')}` },
    });
    const { token } = (await res.json()) as { token: string };
    const tokensBefore = proxy.tokenRequests;
    expect((await pull(priv, { registry_token: token })).image_ref).toBe(pushed.config);
    expect(proxy.tokenRequests).toBe(tokensBefore);
    await client.unary(client.image, 'RemoveImage', { image: { image: priv } });
    expect((await pull(priv, { username: 'carol', password: 'pw' })).image_ref).toBe(pushed.config);
    expect(proxy.tokenRequests).toBe(tokensBefore + 1);
    await client.unary(client.image, 'RemoveImage', { image: { image: priv } });
  });
});
