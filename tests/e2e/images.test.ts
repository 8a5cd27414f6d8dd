// `berth` image commands end to end: the built CLI against a real image-service process, real
// nats-server, redis-server and docker-registry (one open, one with htpasswd basic auth). A real
// task-service process answers rmi's in-use check (no snapshot-service: unpacking fails here).
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { TaskApi } from '@berth/api';
import {
  busyboxTar,
  fileTar,
  makeImage,
  makeLayer,
  type ServiceProcess,
  startImageService,
  startProxy,
  uploadImage,
  writeTestHelper,
} from '@berth/image-service/testing';
import { call } from '@berth/kit';
import { startNats, startRedis, startRegistry, type TestServer } from '@berth/testing';
import { connect, type NatsConnection } from 'nats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  BERTH_BIN,
  type IsolatedEnv,
  isolatedEnv,
  REPO_ROOT,
  removeIsolatedEnv,
  runBerth,
} from '../harness/index.js';
import { until } from './containers-stack.js';

const arch = process.arch === 'arm64' ? 'arm64' : 'amd64';
let nats: TestServer;
let redis: TestServer;
let registry: TestServer & { host: string };
let secure: TestServer & { host: string };
let nc: NatsConnection;
let inst: IsolatedEnv;
let svc: ServiceProcess;
let tasks: ChildProcess | undefined;
const img = makeImage([makeLayer(busyboxTar(), 'gzip'), makeLayer(fileTar('etc/motd', 'hi'), 'zstd')], {
  arch,
});

function htpasswd(user: string, pass: string): string {
  const hash = execFileSync('python3', [
    '-W',
    'ignore',
    '-c',
    'import crypt,sys; print(crypt.crypt(sys.argv[1], crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16)))',
    pass,
  ])
    .toString()
    .trim();
  return `${user}:${hash}\n`;
}

const berth = (...args: string[]) => runBerth(args, { env: inst.env });

beforeAll(async () => {
  [nats, redis, registry, secure] = await Promise.all([
    startNats({ jetstream: false }),
    startRedis({ appendonly: false }),
    startRegistry(),
    startRegistry({ htpasswd: htpasswd('dora', 'pw1') }),
  ]);
  nc = await connect({ servers: nats.url });
  inst = await isolatedEnv({
    env: { BERTH_NATS_URL: nats.url, BERTH_REDIS_URL: redis.url, BERTH_LOG_LEVEL: 'warn' },
  });
  inst.env.DOCKER_CONFIG = join(inst.root, 'docker');
  await uploadImage(registry.url, 'e2e/busybox', 'v1', img);
  await uploadImage(
    secure.url,
    'e2e/private',
    'v1',
    img,
    `Basic ${Buffer.from('dora:pw1').toString('base64')}`,
  );
  svc = await startImageService({
    nc,
    natsUrl: nats.url,
    redisUrl: redis.url,
    node: inst.nodeId,
    stateRoot: inst.stateRoot,
    configDir: inst.root,
    // A SIGKILLed replica's blob locks expire this fast, so the test's retry does not wait long.
    settings: { blobLockTtlMs: 3000 },
  });
  // rmi asks the task-service whether a container uses the image; without it a plain rmi is refused.
  const main = join(REPO_ROOT, 'packages', 'task-service', 'dist', 'main.js');
  const proc = spawn(process.execPath, [main], { env: { ...process.env, ...inst.env }, stdio: 'ignore' });
  tasks = proc;
  await until('task-service to answer info', async () => {
    if (proc.exitCode !== null) throw new Error(`task-service exited ${proc.exitCode}`);
    return (await call(nc, TaskApi, 'info', {}, { timeoutMs: 500 })).pid === proc.pid;
  });
});
afterAll(async () => {
  if (tasks && tasks.exitCode === null && tasks.signalCode === null) {
    const exited = once(tasks, 'exit');
    tasks.kill('SIGTERM');
    await exited;
  }
  await svc?.kill();
  await nc?.close();
  await Promise.all([nats?.stop(), redis?.stop(), registry?.stop(), secure?.stop()]);
  await removeIsolatedEnv(inst);
});

describe('berth image commands', () => {
  it('pull shows progress lines and the digest; images lists it', async () => {
    const ref = `${registry.host}/e2e/busybox:v1`;
    const r = await berth('pull', '--no-unpack', ref);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`Digest: ${img.desc.digest}`);
    expect(r.stdout).toContain(`${img.layers[0]?.desc.digest.slice(7, 19)}: Pull complete`);
    const ls = await berth('images');
    expect(ls.stdout).toMatch(new RegExp(`${registry.host}/e2e/busybox\\s+v1\\s+[0-9a-f]{12}`));
    const q = await berth('images', '-q');
    expect(q.stdout.trim()).toMatch(/^[0-9a-f]{12}$/);
    const dg = await berth('images', '--digests', '--filter', 'reference=*/e2e/*');
    expect(dg.stdout).toContain(img.desc.digest);
    const none = await berth('images', '--filter', 'reference=nothing*');
    expect(none.stdout.trim().split('\n')).toHaveLength(1);
    expect(r.stdout).toContain(`Downloaded newer image for ${ref}`);
    // Pulled again: nothing to do. By its digest: a new name for content already here, said so.
    expect((await berth('pull', '--no-unpack', ref)).stdout).toContain(`Image is up to date for ${ref}`);
    const pinned = `${registry.host}/e2e/busybox@${img.desc.digest}`;
    const byDigest = await berth('pull', '--no-unpack', pinned);
    expect(byDigest.code, byDigest.stderr).toBe(0);
    expect(byDigest.stdout).toContain(
      `Created ${pinned} from content already on this node (nothing downloaded)`,
    );
    expect((await berth('rmi', pinned)).code).toBe(0);
  });

  it('pull without --no-unpack reports the unpack failure on one line and exits non-zero', async () => {
    const r = await berth('pull', `${registry.host}/e2e/busybox:v1`);
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toContain(`unpack of "${registry.host}/e2e/busybox:v1" failed`);
  });

  it('bad references and missing images fail with one line naming the reference', async () => {
    const bad = await berth('pull', 'Bad//Ref');
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/^berth: invalid reference "Bad\/\/Ref": [^\n]+\n$/);
    const missing = await berth('pull', `${registry.host}/e2e/none:v1`);
    expect(missing.code).toBe(1);
    expect(missing.stderr.trim().split('\n')).toHaveLength(1);
    expect(missing.stderr).toContain(`image "${registry.host}/e2e/none:v1" not found`);
    const denied = await berth('pull', '--no-unpack', `${secure.host}/e2e/private:v1`);
    expect(denied.code).toBe(1);
    expect(denied.stderr).toContain(`"${secure.host}/e2e/private:v1"`);
  });

  it('tag, inspect, save, rmi and load round-trip an image', async () => {
    expect((await berth('tag', `${registry.host}/e2e/busybox:v1`, 'local/bb:keep')).code).toBe(0);
    const ins = await berth('image', 'inspect', 'local/bb:keep');
    const recs = JSON.parse(ins.stdout) as { name: string; manifest: { digest: string } }[];
    expect(recs[0]).toMatchObject({ name: 'docker.io/local/bb:keep', manifest: { digest: img.desc.digest } });
    // Several names: the ones found are printed, each missing one is a line on stderr, exit 1.
    const some = await berth('image', 'inspect', 'local/bb:keep', 'local/absent:1');
    expect(some.code).toBe(1);
    expect((JSON.parse(some.stdout) as { name: string }[]).map((r) => r.name)).toEqual([
      'docker.io/local/bb:keep',
    ]);
    expect(some.stderr).toBe('berth: image "docker.io/local/absent:1" not found\n');
    const file = join(inst.root, 'bb.tar');
    expect((await berth('save', '-o', file, 'local/bb:keep')).code).toBe(0);
    expect((await stat(file)).size).toBeGreaterThan(img.layers[0]?.blob.length ?? 0);
    const rm = await berth('rmi', 'local/bb:keep', `${registry.host}/e2e/busybox:v1`);
    expect(rm.code).toBe(0);
    expect(rm.stdout).toContain('Untagged: docker.io/local/bb:keep');
    expect(rm.stdout).toMatch(/Deleted: \d+ blobs/);
    expect((await berth('images', '-q')).stdout).toBe('');
    const again = await berth('rmi', 'local/bb:keep');
    expect(again.code).toBe(1);
    expect(again.stderr).toBe('berth: image "docker.io/local/bb:keep" not found\n');
    const load = await berth('load', '--no-unpack', '-i', file);
    expect(load.code).toBe(0);
    expect(load.stdout).toBe('Loaded image: docker.io/local/bb:keep\n');
  });

  it('save writes to stdout and load reads stdin', async () => {
    const file = join(inst.root, 'piped.tar');
    const sh = (cmd: string) => execFileSync('sh', ['-c', cmd], { env: inst.env }).toString();
    sh(`"${process.execPath}" "${BERTH_BIN}" save local/bb:keep > "${file}"`);
    const info = JSON.parse(execFileSync('skopeo', ['inspect', `oci-archive:${file}`]).toString()) as {
      Digest: string;
    };
    expect(info.Digest).toBe(img.desc.digest);
    expect(sh(`"${process.execPath}" "${BERTH_BIN}" load --no-unpack --name piped/bb < "${file}"`)).toBe(
      'Loaded image: docker.io/local/bb:keep\n',
    );
  });

  it('push sends the image to another repository', async () => {
    const r = await berth('push', 'local/bb:keep', `${registry.host}/e2e/pushed:v2`);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`digest: ${img.desc.digest}`);
    const check = await fetch(`${registry.url}/v2/e2e/pushed/manifests/v2`, {
      method: 'HEAD',
      headers: { accept: img.desc.mediaType },
    });
    expect(check.headers.get('docker-content-digest')).toBe(img.desc.digest);
  });

  it('login checks and stores credentials (0600), pull uses them, logout removes them', async () => {
    const wrong = await berth('login', '-u', 'dora', '-p', 'nope', secure.host);
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toContain(`login to ${secure.host} failed`);
    const ok = await runBerth(['login', '-u', 'dora', '--password-stdin', secure.host], {
      env: inst.env,
      input: 'pw1\n',
    });
    expect(ok.stdout).toBe('Login Succeeded\n');
    const cfg = join(inst.env.DOCKER_CONFIG as string, 'config.json');
    expect((await stat(cfg)).mode & 0o777).toBe(0o600);
    const pull = await berth('pull', '--no-unpack', `${secure.host}/e2e/private:v1`);
    expect(pull.code).toBe(0);
    expect((await berth('logout', secure.host)).stdout).toBe(
      `Removing login credentials for ${secure.host}\n`,
    );
    const after = await berth('pull', '--no-unpack', `${secure.host}/e2e/private:v2`);
    expect(after.code).toBe(1);
  });

  it('with a credsStore, login stores the secret in the credential helper, pull reads it, logout erases it', async () => {
    const dir = join(inst.root, 'cred-helper');
    await mkdir(dir, { recursive: true });
    await writeTestHelper(dir, 'berthtest');
    const dockerDir = join(inst.root, 'docker-helper');
    await mkdir(dockerDir, { recursive: true });
    const cfg = join(dockerDir, 'config.json');
    await writeFile(cfg, JSON.stringify({ credsStore: 'berthtest' }));
    const env = { ...inst.env, DOCKER_CONFIG: dockerDir, PATH: `${dir}:${process.env.PATH ?? ''}` };
    const run = (...args: string[]) => runBerth(args, { env });
    const ok = await run('login', '-u', 'dora', '-p', 'pw1', secure.host);
    expect(ok.stdout, ok.stderr).toBe('Login Succeeded\n');
    // config.json still only names the helper; the helper has the secret.
    expect(JSON.parse(await readFile(cfg, 'utf8'))).toEqual({ credsStore: 'berthtest' });
    expect(JSON.parse(await readFile(join(dir, 'store.json'), 'utf8'))).toEqual({
      [secure.host]: { Username: 'dora', Secret: 'pw1' },
    });
    const pull = await run('pull', '--no-unpack', `${secure.host}/e2e/private:v1`);
    expect(pull.code, pull.stderr).toBe(0);
    expect((await run('logout', secure.host)).code).toBe(0);
    expect(JSON.parse(await readFile(join(dir, 'store.json'), 'utf8'))).toEqual({});
    // A helper that is not there fails the pull naming it, rather than pulling anonymously.
    await writeFile(cfg, JSON.stringify({ credsStore: 'absent' }));
    const missing = await run('pull', '--no-unpack', `${secure.host}/e2e/private:v1`);
    expect(missing.code).not.toBe(0);
    expect(missing.stderr).toContain('credential helper docker-credential-absent');
  });

  it('a pull whose image-service is SIGKILLed fails within the silence limit; the next pull succeeds', async () => {
    const big = makeImage([makeLayer(Buffer.alloc(3 * 1024 * 1024, 9), 'none')], { arch });
    await uploadImage(registry.url, 'e2e/killed', 'v1', big);
    let release: () => void = () => undefined;
    const held = new Promise<void>((r) => {
      release = r;
    });
    let sent: () => void = () => undefined;
    const partial = new Promise<void>((r) => {
      sent = r;
    });
    const layer = big.layers[0]?.desc.digest ?? '';
    let stalling = true;
    const proxy = await startProxy({
      upstream: registry.url,
      intercept: async (req, res, path) => {
        if (!stalling || req.method !== 'GET' || !path.endsWith(`/blobs/${layer}`) || req.headers.range)
          return false;
        res.writeHead(200, { 'content-length': big.layers[0]?.blob.length ?? 0 });
        res.write(big.layers[0]?.blob.subarray(0, 1024 * 1024), () => sent());
        await held;
        res.destroy();
        return true;
      },
    });
    try {
      const ref = `${proxy.host}/e2e/killed:v1`;
      const pending = runBerth(['pull', '--no-unpack', ref], {
        env: { ...inst.env, BERTH_PROGRESS_SILENCE_MS: '3000' },
      });
      await partial;
      await svc.kill('SIGKILL');
      const r = await pending;
      expect(r.code).toBe(1);
      expect(r.stderr).toBe(
        `berth: pull of "${ref}": no word from the image-service for 3 s; it may have stopped (check 'berth status')\n`,
      );
      stalling = false;
      release();
      svc = await startImageService({
        nc,
        natsUrl: nats.url,
        redisUrl: redis.url,
        node: inst.nodeId,
        stateRoot: inst.stateRoot,
        configDir: inst.root,
        settings: { blobLockTtlMs: 3000 },
      });
      const again = await berth('pull', '--no-unpack', ref);
      expect(again.stderr).toBe('');
      expect(again.code).toBe(0);
      expect(again.stdout).toContain(`Digest: ${big.desc.digest}`);
    } finally {
      release();
      await proxy.stop();
    }
  });
});
