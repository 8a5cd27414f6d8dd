import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { BERTH_VERSION, defineService, Service, serviceDefs } from '@berth/api';
import { connectNats, createLogger, type ServedService, serve, startTelemetry } from '@berth/kit';
import { startNats } from '@berth/testing';
import type { NatsConnection } from 'nats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Gateway, startGateway } from './gateway.js';
import { type CriClient, criClient } from './testdata/cri-client.js';

// kubelet's logs name no trace: the gateway logs one line per CRI call with its trace id, at info
// unless it is one of the calls kubelet polls every few seconds and it succeeded.

const telemetry = startTelemetry({ service: 'cri-gateway', version: BERTH_VERSION, node: 'test' });
const lines: Record<string, unknown>[] = [];
const out = new PassThrough();
let buffered = '';
out.on('data', (chunk: Buffer) => {
  buffered += chunk.toString('utf8');
  for (let nl = buffered.indexOf('\n'); nl >= 0; nl = buffered.indexOf('\n')) {
    lines.push(JSON.parse(buffered.slice(0, nl)) as Record<string, unknown>);
    buffered = buffered.slice(nl + 1);
  }
});
const log = createLogger({ service: 'cri-gateway', node: 'test', level: 'info', destination: out });
const quiet = createLogger({ service: 'test', node: 'test', level: 'silent' });

let nats: Awaited<ReturnType<typeof startNats>>;
let nc: NatsConnection;
let root: string;
let gateway: Gateway;
let client: CriClient;
const served: ServedService[] = [];
const node = `t-${Math.random().toString(16).slice(2, 10)}`;

beforeAll(async () => {
  nats = await startNats({ jetstream: false });
  nc = await connectNats({ url: nats.url, name: 'cri-access-test' });
  root = await mkdtemp(join(tmpdir(), 'berth-cri-log-'));
  // task-service and shim answer `info` only: a call that needs more fails, as a failing call should.
  for (const s of [Service.task, Service.shim]) {
    served.push(
      await serve({
        nc,
        service: defineService({ name: s, scope: serviceDefs[s].scope, ops: {} }),
        version: BERTH_VERSION,
        node,
        log: quiet,
        handlers: {},
      }),
    );
  }
  const runRoot = join(root, 'run');
  gateway = await startGateway({
    nc,
    node,
    socket: join(runRoot, 'cri.sock'),
    runRoot,
    snapshotsDir: join(root, 'snapshots'),
    containersDir: join(root, 'containers'),
    log,
  });
  client = criClient(join(runRoot, 'cri.sock'));
});

afterAll(async () => {
  client?.close();
  await gateway?.close(1000);
  for (const s of served) await s.stop(100);
  await nc?.close();
  await nats?.stop();
  await rm(root, { recursive: true, force: true });
  await telemetry.shutdown();
});

describe('CRI access log', () => {
  it('one line per call with outcome, duration and trace id; polled calls that succeed at debug', async () => {
    await client.unary(client.runtime, 'Version', { version: '0.1.0' });
    await client.unary(client.runtime, 'RuntimeConfig', {});
    await client.unary(client.runtime, 'ContainerStatus', { container_id: 'nope' }).catch(() => undefined);
    const access = lines.filter((l) => l.msg === 'CRI request');
    expect(access.map((l) => [l.rpc, l.level])).toEqual([
      ['RuntimeService/RuntimeConfig', 30],
      ['RuntimeService/ContainerStatus', 30],
    ]);
    expect(access[0]?.outcome).toBe('OK');
    expect(access[1]?.outcome).not.toBe('OK');
    for (const a of access) {
      expect(a.trace_id).toMatch(/^[0-9a-f]{32}$/);
      expect(a.trace_id).not.toMatch(/^0+$/);
      expect(typeof a.ms).toBe('number');
    }
    expect(access[0]?.trace_id).not.toBe(access[1]?.trace_id);
  });
});
