import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { chmod, lstat, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BERTH_VERSION, BerthError, Code, defineService, Service, serviceDefs } from '@berth/api';
import { connectNats, createLogger, type ServedService, serve } from '@berth/kit';
import { startNats } from '@berth/testing';
import type { ServiceError } from '@grpc/grpc-js';
import type { NatsConnection } from 'nats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Gateway, startGateway } from './gateway.js';
import { SOCKET_MODE } from './grpc/socket.js';
import { type CriClient, criClient } from './testdata/cri-client.js';

// The CRI gateway in-process, on a real unix socket, answering from real NATS services.

const log = createLogger({ service: 'cri-gateway', node: 'test', level: 'silent' });
let nats: Awaited<ReturnType<typeof startNats>>;
let nc: NatsConnection;
let root: string;
const node = `t-${Math.random().toString(16).slice(2, 10)}`;

/** Serves `info` as the real task-service or shim would (the kit's serve, over NATS). */
function serveInfo(service: Service, checks?: () => Promise<Record<string, string>>): Promise<ServedService> {
  return serve({
    nc,
    service: defineService({ name: service, scope: serviceDefs[service].scope, ops: {} }),
    version: BERTH_VERSION,
    node,
    log,
    handlers: {},
    ...(checks ? { checks } : {}),
  });
}

beforeAll(async () => {
  nats = await startNats({ jetstream: false });
  nc = await connectNats({ url: nats.url, name: 'cri-test' });
  root = await mkdtemp(join(tmpdir(), 'berth-cri-'));
});

afterAll(async () => {
  await nc?.close();
  await nats?.stop();
  await rm(root, { recursive: true, force: true });
});

type Status = {
  status: { conditions: { type: string; status: boolean; reason: string; message: string }[] };
  info: Record<string, string>;
};

describe('CRI RuntimeService over the unix socket', () => {
  let runRoot: string;
  let socket: string;
  let gateway: Gateway;
  let client: CriClient;
  let task: ServedService;
  let shim: ServedService;

  beforeAll(async () => {
    runRoot = join(root, 'run');
    socket = join(runRoot, 'cri.sock');
    [task, shim] = await Promise.all([serveInfo(Service.task), serveInfo(Service.shim)]);
    gateway = await startGateway({
      nc,
      node,
      socket,
      runRoot,
      snapshotsDir: join(root, 'snapshots'),
      containersDir: join(root, 'containers'),
      log,
    });
    client = criClient(socket);
  });

  afterAll(async () => {
    client?.close();
    await gateway?.close(1000);
    await Promise.all([task?.stop(100), shim?.stop(100)]);
  });

  it('answers Version', async () => {
    expect(await client.unary(client.runtime, 'Version', { version: '0.1.0' })).toEqual({
      version: '0.1.0',
      runtime_name: 'berth',
      runtime_version: BERTH_VERSION,
      runtime_api_version: 'v1',
    });
  });

  it('reports RuntimeReady when task-service and shim answer, NetworkReady false naming why', async () => {
    const s = await client.unary<Status>(client.runtime, 'Status', { verbose: true });
    expect(s.status.conditions).toEqual([
      { type: 'RuntimeReady', status: true, reason: '', message: '' },
      {
        type: 'NetworkReady',
        status: false,
        reason: 'NetworkPluginNotReady',
        // This shim serves only `info`: no network-list, so no network pods could join.
        message: `Network plugin returns error: cannot list the node's CNI networks: shim is unavailable: no responder for "network-list" on berth.${node}.shim.v1.network-list`,
      },
    ]);
    const services = JSON.parse(s.info.services ?? '{}');
    expect(services['task-service']).toMatchObject({ service: 'task-service', healthy: true });
    expect(services.shim).toMatchObject({ service: 'shim', node, healthy: true });
    const quiet = await client.unary<Status>(client.runtime, 'Status', {});
    expect(quiet.info).toEqual({});
  });

  it('answers RuntimeConfig with the cgroupfs driver', async () => {
    expect(await client.unary(client.runtime, 'RuntimeConfig', {})).toEqual({
      linux: { cgroup_driver: 'CGROUPFS' },
    });
  });

  it('answers UNIMPLEMENTED naming the RPC for everything not built yet', async () => {
    for (const [c, rpc, req] of [
      [client.runtime, 'CheckpointContainer', { container_id: 'c' }],
      [client.runtime, 'ListMetricDescriptors', {}],
      [client.runtime, 'UpdatePodSandboxResources', { pod_sandbox_id: 'p' }],
    ] as const) {
      const err = (await client.unary(c, rpc, req).catch((e: unknown) => e)) as ServiceError;
      expect(err.code, rpc).toBe(12);
      expect(err.details).toBe(`CRI RuntimeService/${rpc} is not implemented by berth yet`);
    }
    const streamed = await client.streamStatus(client.runtime, 'StreamPodSandboxMetrics', {});
    expect(streamed.code).toBe(12);
    expect(streamed.details).toBe(
      'CRI RuntimeService/StreamPodSandboxMetrics is not implemented by berth yet',
    );
  });

  it('serves the streaming server of Exec, Attach and PortForward on loopback', async () => {
    expect(gateway.streamingUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    // A URL the gateway never handed out: the streaming server answers, and refuses it.
    expect((await fetch(`${gateway.streamingUrl}/exec/never-issued`)).status).toBe(404);
  });

  it('keeps the socket private: 0600, root-owned, in a 0700 directory, as docs/layout.md says', async () => {
    const s = await lstat(socket);
    expect(s.isSocket()).toBe(true);
    expect(s.mode & 0o777).toBe(0o600);
    expect(SOCKET_MODE).toBe(0o600);
    // The layout document is part of the repository: its row for cri.sock names the same mode.
    const layout = await readFile(new URL('../../../docs/layout.md', import.meta.url), 'utf8');
    const row = layout.split('\n').find((l) => l.startsWith('| `cri.sock`'));
    expect(row).toContain(`mode 0${SOCKET_MODE.toString(8)}`);
    if (process.getuid?.() === 0) expect([s.uid, s.gid]).toEqual([0, 0]);
    expect((await stat(runRoot)).mode & 0o777).toBe(0o700);
  });

  it('reports RuntimeReady false naming an unhealthy or missing service', async () => {
    await shim.stop(100);
    shim = await serveInfo(Service.shim, async () => ({ runc: 'runc not found on PATH' }));
    let s = await client.unary<Status>(client.runtime, 'Status', {});
    expect(s.status.conditions[0]).toEqual({
      type: 'RuntimeReady',
      status: false,
      reason: 'BerthServicesNotReady',
      message: 'shim is unhealthy (runc: runc not found on PATH)',
    });
    await shim.stop(100);
    await task.stop(100);
    s = await client.unary<Status>(client.runtime, 'Status', {});
    expect(s.status.conditions[0]?.status).toBe(false);
    expect(s.status.conditions[0]?.message).toBe(
      `shim is unavailable: no responder for "info" on berth.${node}.shim.v1.info; ` +
        'task-service is unavailable: no responder for "info" on berth.task.v1.info',
    );
    [task, shim] = await Promise.all([serveInfo(Service.task), serveInfo(Service.shim)]);
    s = await client.unary<Status>(client.runtime, 'Status', {});
    expect(s.status.conditions[0]?.status).toBe(true);
  });
});

describe('socket safety', () => {
  async function refusal(p: Promise<unknown>): Promise<BerthError> {
    const err = await p.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(BerthError);
    return err as BerthError;
  }

  it('refuses a socket a live gateway serves, and replaces a stale one', async () => {
    const runRoot = join(root, 'run-live');
    const socket = join(runRoot, 'cri.sock');
    const first = await startGateway({
      nc,
      node,
      socket,
      runRoot,
      snapshotsDir: join(root, 'snapshots'),
      containersDir: join(root, 'containers'),
      log,
    });
    const err = await refusal(
      startGateway({
        nc,
        node,
        socket,
        runRoot,
        snapshotsDir: join(root, 'snapshots'),
        containersDir: join(root, 'containers'),
        log,
      }),
    );
    expect(err.code).toBe(Code.ALREADY_EXISTS);
    expect(err.message).toBe(`another process is already serving ${socket}`);
    // A stale socket: a process bound the path and was killed before it could remove it.
    await first.close(500);
    const dead = spawn(process.execPath, [
      '-e',
      `require('node:net').createServer().listen(${JSON.stringify(socket)}, () => process.kill(process.pid, 'SIGKILL'))`,
    ]);
    expect((await once(dead, 'exit'))[1]).toBe('SIGKILL');
    expect((await lstat(socket)).isSocket()).toBe(true);
    const again = await startGateway({
      nc,
      node,
      socket,
      runRoot,
      snapshotsDir: join(root, 'snapshots'),
      containersDir: join(root, 'containers'),
      log,
    });
    const c = criClient(socket);
    expect(await c.unary(c.runtime, 'Version', {})).toMatchObject({ runtime_name: 'berth' });
    c.close();
    await again.close(500);
    await expect(lstat(socket)).rejects.toThrow();
  });

  it('refuses a path that is not a socket, is relative, or sits in a directory others can write', async () => {
    const runRoot = join(root, 'run-bad');
    await mkdir(runRoot, { recursive: true });
    const file = join(runRoot, 'cri.sock');
    await writeFile(file, 'not a socket');
    let err = await refusal(
      startGateway({
        nc,
        node,
        socket: file,
        runRoot,
        snapshotsDir: join(root, 'snapshots'),
        containersDir: join(root, 'containers'),
        log,
      }),
    );
    expect(err.code).toBe(Code.FAILED_PRECONDITION);
    expect(err.message).toBe(`${file} exists and is not a socket; refusing to replace it`);

    err = await refusal(
      startGateway({
        nc,
        node,
        socket: 'cri.sock',
        runRoot,
        snapshotsDir: join(root, 'snapshots'),
        containersDir: join(root, 'containers'),
        log,
      }),
    );
    expect(err.code).toBe(Code.INVALID_ARGUMENT);

    const shared = join(root, 'shared-dir');
    await mkdir(shared);
    await chmod(shared, 0o777);
    err = await refusal(
      startGateway({
        nc,
        node,
        socket: join(shared, 'cri.sock'),
        runRoot,
        snapshotsDir: join(root, 'snapshots'),
        containersDir: join(root, 'containers'),
        log,
      }),
    );
    expect(err.code).toBe(Code.FAILED_PRECONDITION);
    expect(err.message).toContain(`socket directory ${shared} is writable by other users (mode 777)`);
    expect((await stat(shared)).mode & 0o777).toBe(0o777);
  });

  it('tightens a run root that was left open to 0700', async () => {
    const runRoot = join(root, 'run-open');
    await mkdir(runRoot);
    await chmod(runRoot, 0o755);
    const gw = await startGateway({
      nc,
      node,
      socket: join(runRoot, 'cri.sock'),
      runRoot,
      snapshotsDir: join(root, 'snapshots'),
      containersDir: join(root, 'containers'),
      log,
    });
    expect((await stat(runRoot)).mode & 0o777).toBe(0o700);
    await gw.close(500);
    // Its streaming server is closed with it.
    await expect(fetch(`${gw.streamingUrl}/`)).rejects.toThrow();
  });
});
