import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { lstat, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BERTH_VERSION, CriApi, defineService, Service, serviceDefs } from '@berth/api';
import { client, connectNats, createLogger, type ServedService, serve } from '@berth/kit';
import { startNats, startRedis } from '@berth/testing';
import type { NatsConnection } from 'nats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { criClient } from './testdata/cri-client.js';

// The built gateway process (dist/main.js) as `berth up` runs it: config file, NATS, Redis, socket.

const MAIN = join(import.meta.dirname, '..', 'dist', 'main.js');
const node = `t-${Math.random().toString(16).slice(2, 10)}`;
let nats: Awaited<ReturnType<typeof startNats>>;
let redis: Awaited<ReturnType<typeof startRedis>>;
let nc: NatsConnection;
let dir: string;
let proc: ChildProcess | undefined;
let out = '';
const served: ServedService[] = [];

beforeAll(async () => {
  [nats, redis] = await Promise.all([startNats({ jetstream: false }), startRedis({ appendonly: false })]);
  nc = await connectNats({ url: nats.url, name: 'cri-main-test' });
  dir = await mkdtemp(join(tmpdir(), 'berth-cri-main-'));
  const log = createLogger({ service: 'test', node, level: 'silent' });
  for (const service of [Service.task, Service.shim]) {
    // Only `info`, as the real service answers it: the gateway's Status probes nothing else.
    const infoOnly = defineService({ name: service, scope: serviceDefs[service].scope, ops: {} });
    served.push(await serve({ nc, service: infoOnly, version: BERTH_VERSION, node, log, handlers: {} }));
  }
});

afterAll(async () => {
  if (proc && proc.exitCode === null && proc.signalCode === null) {
    proc.kill('SIGKILL');
    await once(proc, 'exit');
  }
  await Promise.all(served.map((s) => s.stop(100)));
  await nc?.close();
  await Promise.all([nats?.stop(), redis?.stop()]);
  await rm(dir, { recursive: true, force: true });
});

describe('cri-gateway process', () => {
  it('serves CRI on the configured socket and info on NATS, and stops cleanly on SIGTERM', async () => {
    const socket = join(dir, 'sock', 'cri.sock');
    const config = join(dir, 'config.json');
    const free = createServer().listen(0, '127.0.0.1');
    await once(free, 'listening');
    const port = (free.address() as { port: number }).port;
    await new Promise((r) => free.close(r));
    const streaming = { host: '127.0.0.1', port, advertiseHost: 'node-a.example' };
    await writeFile(config, JSON.stringify({ services: { 'cri-gateway': { socket, streaming } } }));
    proc = spawn(process.execPath, [MAIN], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: gatewayEnv(config),
    });
    const ready = new Promise<void>((resolve, reject) => {
      const onData = (b: Buffer) => {
        out += b.toString();
        if (out.includes('"msg":"cri-gateway ready"')) resolve();
      };
      proc?.stdout?.on('data', onData);
      proc?.stderr?.on('data', onData);
      proc?.once('exit', (code) => reject(new Error(`cri-gateway exited ${code} before ready:\n${out}`)));
    });
    await ready;

    const s = await lstat(socket);
    expect(s.isSocket()).toBe(true);
    expect(s.mode & 0o777).toBe(0o600);
    // Outside the run root the directory is created private; an existing one is never chmod-ed.
    expect((await stat(join(dir, 'sock'))).mode & 0o777).toBe(0o700);

    const c = criClient(socket);
    expect(await c.unary(c.runtime, 'Version', {})).toMatchObject({
      runtime_name: 'berth',
      runtime_api_version: 'v1',
    });
    const status = await c.unary<{ status: { conditions: { type: string; status: boolean }[] } }>(
      c.runtime,
      'Status',
      {},
    );
    expect(status.status.conditions.map((x) => [x.type, x.status])).toEqual([
      ['RuntimeReady', true],
      ['NetworkReady', false],
    ]);
    c.close();

    const nats_ = client(nc, CriApi);
    const info = await nats_.info({});
    expect(info).toMatchObject({ service: 'cri-gateway', node, healthy: true, pid: proc.pid });
    expect(info.checks).toEqual({ nats: 'ok', redis: 'ok', grpc: 'ok' });
    expect(await nats_.version({})).toEqual({
      version: '0.1.0',
      runtimeName: 'berth',
      runtimeVersion: BERTH_VERSION,
      runtimeApiVersion: 'v1',
    });

    // The streaming server listens where configured and puts the advertised host in its URLs.
    expect(out).toContain(`"streaming":"http://node-a.example:${port}"`);
    expect((await fetch(`http://127.0.0.1:${port}/exec/never-issued`)).status).toBe(404);

    proc.kill('SIGTERM');
    const [code] = await once(proc, 'exit');
    expect(code, out).toBe(0);
    await expect(lstat(socket)).rejects.toThrow(/ENOENT/);
    await expect(fetch(`http://127.0.0.1:${port}/`)).rejects.toThrow();
  });

  it('fails start-up (exit 1) naming the setting when the socket path is not absolute', async () => {
    const err = await failedStart('bad.json', { socket: 'cri.sock' });
    expect(err).toContain('invalid config "services.cri-gateway.socket": must be an absolute path');
  });
  it('fails start-up (exit 1) naming the setting when grpcServer names no server', async () => {
    const err = await failedStart('bad-grpc.json', { socket: join(dir, 'y.sock'), grpcServer: 'nghttp2' });
    expect(err).toContain('invalid config "services.cri-gateway.grpcServer"');
  });

  it('fails start-up (exit 1) naming the setting when the streaming port is out of range', async () => {
    const err = await failedStart('bad-streaming.json', {
      socket: join(dir, 'x.sock'),
      streaming: { port: 70_000 },
    });
    expect(err).toContain('invalid config "services.cri-gateway.streaming"');
  });
});

/**
 * Starts the gateway with `settings` as its config section (written to `file` in the test's
 * folder), expects it to exit 1 at start-up, and returns its stderr.
 */
async function failedStart(file: string, settings: Record<string, unknown>): Promise<string> {
  const config = join(dir, file);
  await writeFile(config, JSON.stringify({ services: { 'cri-gateway': settings } }));
  const p = spawn(process.execPath, [MAIN], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: gatewayEnv(config),
  });
  let err = '';
  p.stderr.on('data', (b: Buffer) => {
    err += b.toString();
  });
  const [code] = await once(p, 'exit');
  expect(code, err).toBe(1);
  return err;
}

/** The environment a gateway process of these tests runs with: its config file, the test's servers. */
function gatewayEnv(config: string): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH,
    BERTH_CONFIG: config,
    BERTH_NATS_URL: nats.url,
    BERTH_REDIS_URL: redis.url,
    BERTH_NODE_ID: node,
    BERTH_STATE_ROOT: join(dir, 'state'),
    BERTH_RUN_ROOT: join(dir, 'run'),
  };
}
