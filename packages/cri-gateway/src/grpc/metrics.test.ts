import { BerthError, Code } from '@berth/api';
import { startMetrics } from '@berth/kit';
import { parsePrometheusText, type Sample } from '@berth/kit/metrics-text';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { beginCriCall } from './metrics.js';

// The CRI call metrics on the gateway's real Prometheus endpoint: calls in flight per RPC (kept
// in a map, observed at each scrape), and answered calls by RPC and outcome.

let metrics: Awaited<ReturnType<typeof startMetrics>>;

beforeAll(async () => {
  metrics = await startMetrics({
    service: 'cri-gateway',
    version: '0.0.0',
    node: 'test',
    address: { host: '127.0.0.1', port: 0 },
  });
});

afterAll(async () => {
  await metrics?.shutdown();
});

async function value(name: string, labels: Record<string, string>): Promise<number | undefined> {
  const samples: Sample[] = parsePrometheusText(await (await fetch(metrics.url)).text());
  return samples.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
    ?.value;
}

describe('CRI call metrics', () => {
  it('counts calls in flight per RPC until each is answered, then by outcome', async () => {
    const rpc = 'RuntimeService/ContainerStatus';
    const a = beginCriCall(rpc);
    const b = beginCriCall(rpc);
    const other = beginCriCall('ImageService/ListImages');
    expect(await value('berth_cri_requests_in_flight', { rpc })).toBe(2);
    expect(await value('berth_cri_requests_in_flight', { rpc: 'ImageService/ListImages' })).toBe(1);
    a();
    // Answering twice counts once.
    a();
    b(new BerthError(Code.NOT_FOUND, 'container "x" not found'));
    other();
    expect(await value('berth_cri_requests_in_flight', { rpc })).toBe(0);
    expect(await value('berth_cri_requests_in_flight', { rpc: 'ImageService/ListImages' })).toBe(0);
    expect(await value('berth_cri_requests_total', { rpc, outcome: 'ok' })).toBe(1);
    expect(await value('berth_cri_requests_total', { rpc, outcome: 'not_found' })).toBe(1);
  });
});
