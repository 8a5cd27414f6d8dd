import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { ImageApi } from '@berth/api';
import { loadCriDefinition } from '@berth/cri-gateway';
import { call, connectNats } from '@berth/kit';
import { catalogEntryOf, METRIC_CATALOG } from '@berth/kit/metrics-catalog';
import { parsePrometheusText, type Sample } from '@berth/kit/metrics-text';
import * as grpc from '@grpc/grpc-js';
import type { NatsConnection, ServiceStats } from 'nats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BERTH_BIN } from '../harness/berth.js';
import type { Stack } from '../harness/stack.js';
import { startUpFixture, type UpFixture } from './up-fixture.js';

// Every service of a real `berth up` stack scraped over its Prometheus endpoint before and after
// real work (pulls, a failed pull, containers that exit 0 and 3, CRI calls, one refused): the
// counters move, errors included, and each service exports exactly what the catalog says.
let f: UpFixture;
let stack: Stack;
let image: string;
let nc: NatsConnection;

beforeAll(async () => {
  f = await startUpFixture({ nodes: [{}] });
  [stack] = f.stacks as [Stack];
  image = f.image;
  nc = await connectNats({ url: stack.natsUrl, name: 'metrics-e2e' });
}, 120_000);

afterAll(async () => {
  await nc?.close();
  await f?.stop();
}, 60_000);

/** Each service's metrics URL, from `berth status --json`. */
async function endpoints(): Promise<Map<string, string>> {
  const st = (await stack.status()).json;
  const out = new Map<string, string>();
  for (const s of st.services) for (const i of s.instances) if (i.metrics) out.set(s.service, i.metrics);
  return out;
}

async function scrapeAll(urls: Map<string, string>): Promise<Map<string, Sample[]>> {
  const out = new Map<string, Sample[]>();
  for (const [service, url] of urls) {
    const res = await fetch(url);
    expect(res.status, `${service} ${url}`).toBe(200);
    out.set(service, parsePrometheusText(await res.text()));
  }
  return out;
}

function total(samples: Sample[] | undefined, name: string, labels: Record<string, string> = {}): number {
  let t = 0;
  for (const s of samples ?? []) {
    if (s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v)) t += s.value;
  }
  return t;
}

type UnaryFn = (
  r: unknown,
  o: grpc.CallOptions,
  cb: (e: grpc.ServiceError | null, v: unknown) => void,
) => void;

/** A CRI RuntimeService client on the stack's socket, as crictl would use. */
function runtimeClient(): { unary(method: string, req: unknown): Promise<unknown>; close(): void } {
  const v1 = (grpc.loadPackageDefinition(loadCriDefinition()).runtime as grpc.GrpcObject)
    .v1 as grpc.GrpcObject;
  const Runtime = v1.RuntimeService as grpc.ServiceClientConstructor;
  const c = new Runtime(`unix:${join(stack.runRoot, 'cri.sock')}`, grpc.credentials.createInsecure());
  return {
    unary: (method, req) =>
      new Promise((resolve, reject) => {
        const fn = (c as unknown as Record<string, UnaryFn>)[method] as UnaryFn;
        fn.call(c, req, { deadline: new Date(Date.now() + 10_000) }, (e, v) => (e ? reject(e) : resolve(v)));
      }),
    close: () => c.close(),
  };
}

describe('metrics of a running stack', () => {
  it('scrapes each service and sees the counters move, including errors', async () => {
    const urls = await endpoints();
    expect([...urls.keys()].sort()).toEqual(
      ['cri-gateway', 'image-service', 'shim', 'snapshot-service', 'task-service'].sort(),
    );
    for (const url of urls.values()) expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
    const before = await scrapeAll(urls);

    const pull = await stack.berth('pull', image);
    expect(pull.code, pull.stderr).toBe(0);
    const again = await stack.berth('pull', image);
    expect(again.code, again.stderr).toBe(0);
    const missing = await stack.berth('pull', `${f.registry.host}/no-such-image:1`);
    expect(missing.code).not.toBe(0);
    const ok = await stack.berth('run', '--rm', image, 'true');
    expect(ok.code, ok.stderr).toBe(0);
    const three = await stack.berth('run', '--rm', image, 'sh', '-c', 'exit 3');
    expect(three.code).toBe(3);
    const cri = runtimeClient();
    try {
      await cri.unary('Version', { version: 'v1' });
      await expect(cri.unary('ContainerStatus', { container_id: 'no-such-container' })).rejects.toMatchObject(
        {
          code: grpc.status.NOT_FOUND,
        },
      );
    } finally {
      cri.close();
    }
    const after = await scrapeAll(urls);
    const moved = (service: string, name: string, labels: Record<string, string> = {}) =>
      total(after.get(service), name, labels) - total(before.get(service), name, labels);

    // image-service: two pulls answered, one refused; bytes fetched once, then found in the store.
    expect(moved('image-service', 'berth_requests_total', { op: 'pull', outcome: 'ok' })).toBe(2);
    expect(moved('image-service', 'berth_requests_total', { op: 'pull' })).toBe(3);
    expect(moved('image-service', 'berth_image_pulled_bytes_total')).toBeGreaterThan(100_000);
    expect(moved('image-service', 'berth_image_blobs_deduplicated_total')).toBeGreaterThanOrEqual(1);
    expect(moved('image-service', 'berth_request_duration_seconds_count', { op: 'pull' })).toBe(3);
    // snapshot-service: the busybox layer unpacked.
    expect(moved('snapshot-service', 'berth_snapshot_unpacked_bytes_total')).toBeGreaterThan(100_000);
    expect(moved('snapshot-service', 'berth_snapshot_unpacked_files_total')).toBeGreaterThan(10);
    // task-service and shim: two containers created, started, exited 0 and 3.
    expect(moved('task-service', 'berth_requests_total')).toBeGreaterThan(4);
    expect(
      moved('shim', 'berth_shim_runc_duration_seconds_count', { command: 'create', outcome: 'ok' }),
    ).toBe(2);
    expect(moved('shim', 'berth_shim_runc_duration_seconds_count', { command: 'start' })).toBe(2);
    expect(moved('shim', 'berth_shim_exits_total', { kind: 'task', reason: 'Completed' })).toBe(1);
    expect(moved('shim', 'berth_shim_exits_total', { kind: 'task', reason: 'Error' })).toBe(1);
    expect(total(after.get('shim'), 'berth_shim_containers', { status: 'running' })).toBe(0);
    // cri-gateway: per RPC, with the refused one under its outcome.
    expect(
      moved('cri-gateway', 'berth_cri_requests_total', { rpc: 'RuntimeService/Version', outcome: 'ok' }),
    ).toBe(1);
    expect(
      moved('cri-gateway', 'berth_cri_requests_total', {
        rpc: 'RuntimeService/ContainerStatus',
        outcome: 'not_found',
      }),
    ).toBe(1);

    for (const [service, samples] of after) {
      // Every service talks to Redis and uses CPU; none lost its NATS connection.
      expect(moved(service, 'process_cpu_seconds_total'), service).toBeGreaterThan(0);
      expect(total(samples, 'berth_redis_command_duration_seconds_count'), service).toBeGreaterThan(0);
      expect(total(samples, 'berth_nats_reconnects_total'), service).toBe(0);
      // Exactly the catalog: nothing unlisted, and every family listed for this service present.
      const families = new Set(samples.map((s) => catalogEntryOf(s.name)?.name ?? `unlisted ${s.name}`));
      const expected = METRIC_CATALOG.filter((e) => e.services === 'all' || e.services.includes(service));
      expect([...families].sort(), service).toEqual(expected.map((e) => e.name).sort());
      expect(samples.every((s) => s.labels.service === service)).toBe(true);
    }

    // $SRV.STATS tells the same story as the metrics: the refused pull is an error there too.
    let pullErrors = 0;
    for await (const s of await nc.services.client().stats('image-service')) {
      pullErrors += (s as ServiceStats).endpoints?.find((e) => e.name === 'pull')?.num_errors ?? 0;
    }
    expect(pullErrors).toBeGreaterThanOrEqual(1);
  }, 180_000);

  it('berth service top shows every replica, with the requests it is answering', async () => {
    // Requests keep arriving for as long as `berth service top` samples, so its window always holds some.
    let running = true;
    const load = (async () => {
      while (running) await call(nc, ImageApi, 'info', {}, { node: stack.nodeId });
    })();
    const top = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
      const p = spawn(process.execPath, [BERTH_BIN, 'service', 'top', '--json', '--interval', '1'], {
        env: stack.env,
      });
      let stdout = '';
      let stderr = '';
      p.stdout.on('data', (d: Buffer) => {
        stdout += d;
      });
      p.stderr.on('data', (d: Buffer) => {
        stderr += d;
      });
      p.on('close', (code) => resolve({ code, stdout, stderr }));
    });
    running = false;
    await load;
    expect(top.code, top.stderr).toBe(0);
    const rows = (
      JSON.parse(top.stdout) as { replicas: { service: string; figures: Record<string, number> | null }[] }
    ).replicas;
    expect(rows.map((r) => r.service)).toEqual([
      'shim',
      'snapshot-service',
      'image-service',
      'task-service',
      'cri-gateway',
    ]);
    for (const r of rows) {
      expect(r.figures, r.service).not.toBeNull();
      expect(r.figures?.rssBytes).toBeGreaterThan(10e6);
    }
    const img = rows.find((r) => r.service === 'image-service')?.figures;
    expect(img?.rate).toBeGreaterThan(0);
    expect(img?.errorRate).toBe(0);
    expect(img?.p95).toBeGreaterThan(0);
  }, 60_000);

  it('the embedded nats-server serves its monitoring endpoints on 127.0.0.1, listed by berth status', async () => {
    const st = await stack.berth('status');
    expect(st.code, st.stderr).toBe(0);
    const url = /nats-server: running pid \d+, restarts \d+, monitoring (http:\/\/127\.0\.0\.1:\d+)/.exec(
      st.stdout,
    )?.[1];
    expect(url, st.stdout).toBeDefined();
    const varz = (await (await fetch(`${url}/varz`)).json()) as { server_name: string; connections: number };
    expect(varz.server_name).toBe(`berth-${stack.nodeId}`);
    // The five services, the supervisor's probes aside, are connected.
    expect(varz.connections).toBeGreaterThanOrEqual(5);
  });
});
