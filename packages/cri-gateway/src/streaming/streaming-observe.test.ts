import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startMetrics, startTelemetry } from '@berth/kit';
import { parsePrometheusText, type Sample } from '@berth/kit/metrics-text';
import { readSpans, type SpanRecord } from '@berth/kit/tracing';
import { SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ProcessBackend } from '../testdata/process-backend.js';
import { WsTestClient } from '../testdata/ws-client.js';
import { createStreamingServer, type StreamingServer } from './index.js';

// The streaming server counted and traced: sessions by kind, open ones, bytes both ways and
// failures on the gateway's real Prometheus endpoint, and one span per session under the CRI
// call that minted its URL; against a backend running real processes and a real TCP echo server.

// The spans go to a span store of the test's own, as a gateway's go to the host's.
const storeDir = mkdtempSync(join(tmpdir(), 'berth-stream-spans-'));
const telemetry = startTelemetry({ service: 'cri-gateway', version: '0.0.0', node: 'test', storeDir });
let metrics: Awaited<ReturnType<typeof startMetrics>>;
let server: StreamingServer;
let echo: Server;
let echoPort: number;

beforeAll(async () => {
  metrics = await startMetrics({
    service: 'cri-gateway',
    version: '0.0.0',
    node: 'test',
    address: { host: '127.0.0.1', port: 0 },
  });
  server = await createStreamingServer({ backend: new ProcessBackend() });
  echo = createServer((s) => s.pipe(s)).listen(0, '127.0.0.1');
  await once(echo, 'listening');
  echoPort = (echo.address() as { port: number }).port;
});

afterAll(async () => {
  await server?.close();
  echo?.close();
  await metrics?.shutdown();
  await telemetry.shutdown();
  rmSync(storeDir, { recursive: true, force: true });
});

/** The current value of one series, over the real endpoint. */
async function scrape(): Promise<Sample[]> {
  const res = await fetch(metrics.url);
  return parsePrometheusText(await res.text());
}

function value(samples: Sample[], name: string, labels: Record<string, string>): number | undefined {
  return samples.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
    ?.value;
}

/** Mints a URL inside a span standing for the CRI call, as the gateway's handlers do. */
function urlUnder(rpc: string, mint: () => string): { url: string; parent: string } {
  return trace.getTracer('test').startActiveSpan(rpc, (span) => {
    const url = mint();
    span.end();
    return { url, parent: span.spanContext().spanId };
  });
}

const base = { containerId: 'c1', stdin: true, stdout: true, stderr: true, tty: false };

describe('streaming sessions are observed', () => {
  it('starts with zero series for every kind', async () => {
    const s = await scrape();
    for (const kind of ['exec', 'attach', 'portforward']) {
      expect(value(s, 'berth_cri_streaming_sessions_total', { kind, service: 'cri-gateway' })).toBe(0);
      expect(value(s, 'berth_cri_streaming_sessions_active', { kind })).toBe(0);
    }
  });

  it('counts an exec session while it is open and after, with its bytes, and traces it', async () => {
    const { url, parent } = urlUnder('cri/RuntimeService/Exec', () =>
      server.url('exec', { ...base, cmd: ['sh', '-c', 'cat; exit 3'] }),
    );
    const client = await WsTestClient.connect(url, ['v5.channel.k8s.io']);
    expect(client.response.status).toBe(101);
    client.send(Buffer.from('\x00echo me\n'));
    await client.waitFor((m) => m.data.subarray(1).toString() === 'echo me\n');
    const open = await scrape();
    expect(value(open, 'berth_cri_streaming_sessions_active', { kind: 'exec' })).toBe(1);
    expect(value(open, 'berth_cri_streaming_sessions_total', { kind: 'exec' })).toBe(1);
    client.send(Buffer.from([255, 0]));
    await client.closed;

    const span = await waitForSpan('cri stream exec');
    const after = await scrape();
    expect(value(after, 'berth_cri_streaming_sessions_active', { kind: 'exec' })).toBe(0);
    expect(
      value(after, 'berth_cri_streaming_bytes_total', { kind: 'exec', direction: 'in' }),
    ).toBeGreaterThan(8);
    expect(
      value(after, 'berth_cri_streaming_bytes_total', { kind: 'exec', direction: 'out' }),
    ).toBeGreaterThan(8);
    expect(span.kind).toBe(SpanKind.SERVER);
    expect(span.parentSpanId).toBe(parent);
    expect(span.status.code).toBe(SpanStatusCode.OK);
    expect(span.attributes).toMatchObject({
      'berth.stream.kind': 'exec',
      'berth.stream.transport': 'websocket',
      'berth.stream.protocol': 'v5.channel.k8s.io',
      'berth.container.id': 'c1',
      'process.command_args': ['sh', '-c', 'cat; exit 3'],
      'process.exit.code': 3,
    });
  });

  it('counts a port-forward session and its bytes', async () => {
    const url = server.url('portforward', { podSandboxId: 'p1', ports: [echoPort] });
    const client = await WsTestClient.connect(url, ['v4.channel.k8s.io']);
    client.send(Buffer.from('\x00round trip'));
    await client.waitFor((m) => m.data[0] === 0 && m.data.subarray(1).toString() === 'round trip');
    client.close();
    await client.closed;
    const span = await waitForSpan('cri stream portforward');
    expect(span.attributes).toMatchObject({ 'berth.pod.id': 'p1', 'berth.stream.ports': [echoPort] });
    const s = await scrape();
    expect(value(s, 'berth_cri_streaming_sessions_total', { kind: 'portforward' })).toBe(1);
    expect(value(s, 'berth_cri_streaming_sessions_active', { kind: 'portforward' })).toBe(0);
    expect(
      value(s, 'berth_cri_streaming_bytes_total', { kind: 'portforward', direction: 'out' }),
    ).toBeGreaterThan(10);
  });

  it('counts refused upgrades and failed sessions as errors, and marks the span', async () => {
    const bad = await WsTestClient.connect(`${server.url('exec', { ...base, cmd: ['true'] })}x`, [
      'v5.channel.k8s.io',
    ]);
    expect(bad.response.status).toBe(404);
    const noProtocol = await WsTestClient.connect(server.url('attach', base), ['v9.nothing']);
    expect(noProtocol.response.status).not.toBe(101);
    const missing = await WsTestClient.connect(
      server.url('exec', { ...base, stdin: false, cmd: ['/nonexistent/berth-test'] }),
      ['v5.channel.k8s.io'],
    );
    await missing.closed;
    const span = await waitForSpan('cri stream exec', (x) => x.status.code === SpanStatusCode.ERROR);
    expect(span.events.map((e) => e.name)).toContain('exception');
    expect(span.attributes['berth.stream.kind']).toBe('exec');
    const s = await scrape();
    expect(value(s, 'berth_cri_streaming_errors_total', { kind: 'unknown', stage: 'upgrade' })).toBe(1);
    expect(value(s, 'berth_cri_streaming_errors_total', { kind: 'attach', stage: 'upgrade' })).toBe(1);
    expect(value(s, 'berth_cri_streaming_errors_total', { kind: 'exec', stage: 'session' })).toBe(1);
    expect(value(s, 'berth_cri_streaming_sessions_total', { kind: 'attach' })).toBe(0);
  });
});

/**
 * The first stored span `name` that passes `pred`: it ends when the server side's socket closes
 * (a moment after the client's) and the store is written every 200 ms.
 */
async function waitForSpan(name: string, pred: (s: SpanRecord) => boolean = () => true): Promise<SpanRecord> {
  for (;;) {
    const found = (await readSpans(storeDir)).find((s) => s.name === name && pred(s));
    if (found) return found;
    await new Promise((r) => setTimeout(r, 50));
  }
}
