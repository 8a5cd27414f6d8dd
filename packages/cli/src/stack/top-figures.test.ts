import { parsePrometheusText } from '@berth/kit/metrics-text';
import { describe, expect, it } from 'vitest';
import { formatLatency, topFigures } from './top-figures.js';

// Two scrapes of one replica, 2 s apart, in the format the kit's endpoint writes.
const before = parsePrometheusText(`
berth_requests_total{service="image-service",op="pull",outcome="ok"} 10
berth_requests_total{service="image-service",op="pull",outcome="not_found"} 1
berth_request_duration_seconds_bucket{service="image-service",op="pull",outcome="ok",le="0.1"} 10
berth_request_duration_seconds_bucket{service="image-service",op="pull",outcome="ok",le="1"} 10
berth_request_duration_seconds_bucket{service="image-service",op="pull",outcome="ok",le="+Inf"} 10
berth_requests_in_flight{service="image-service",op="pull"} 0
process_cpu_seconds_total{service="image-service"} 3
process_resident_memory_bytes{service="image-service"} 50000000
`);
const after = parsePrometheusText(`
berth_requests_total{service="image-service",op="pull",outcome="ok"} 28
berth_requests_total{service="image-service",op="pull",outcome="not_found"} 3
berth_request_duration_seconds_bucket{service="image-service",op="pull",outcome="ok",le="0.1"} 10
berth_request_duration_seconds_bucket{service="image-service",op="pull",outcome="ok",le="1"} 28
berth_request_duration_seconds_bucket{service="image-service",op="pull",outcome="ok",le="+Inf"} 28
berth_requests_in_flight{service="image-service",op="pull"} 2
process_cpu_seconds_total{service="image-service"} 4
process_resident_memory_bytes{service="image-service"} 52000000
`);

describe('berth service top figures', () => {
  it('differences counters and histograms over the window', () => {
    const f = topFigures(before, after, 2);
    expect(f.rate).toBe(10); // 20 requests in 2 s
    expect(f.errorRate).toBe(1);
    expect(f.inFlight).toBe(2);
    expect(f.cpuPercent).toBe(50);
    expect(f.rssBytes).toBe(52_000_000);
    // All 18 new requests landed in (0.1, 1]: the 95th percentile interpolates inside it, and the
    // 10 older fast ones do not pull it down.
    expect(f.p95).toBeCloseTo(0.1 + 0.9 * 0.95, 5);
  });

  it('has no p95 without requests, and counts from zero after a restart', () => {
    expect(topFigures(before, before, 2).p95).toBeNull();
    const restarted = topFigures(after, before, 1);
    expect(restarted.rate).toBe(11);
  });

  it("counts only the named service's requests of a co-hosted process's endpoint", () => {
    // One endpoint for the whole process: each service's series, the process's CPU and memory.
    const shim = (n: number) =>
      `berth_requests_total{service="shim",op="start",outcome="internal"} ${n}\n` +
      `berth_request_duration_seconds_bucket{service="shim",op="start",outcome="internal",le="+Inf"} ${n}\n` +
      `berth_requests_in_flight{service="shim",op="start"} 5\n`;
    const mixed = (a: typeof before, n: number) =>
      parsePrometheusText(
        `${shim(n)}${a.map((x) => `${x.name}{${Object.entries(x.labels).map(([k, v]) => `${k}="${v}"`)}} ${x.value}`).join('\n')}\n`,
      );
    const f = topFigures(mixed(before, 0), mixed(after, 100), 2, 'image-service');
    expect(f).toMatchObject({ rate: 10, errorRate: 1, inFlight: 2, cpuPercent: 50 });
    const s = topFigures(mixed(before, 0), mixed(after, 100), 2, 'shim');
    expect(s).toMatchObject({ rate: 50, errorRate: 50, inFlight: 5, cpuPercent: 50 });
  });

  it('formats latencies', () => {
    expect(formatLatency(null)).toBe('-');
    expect(formatLatency(0.0005)).toBe('500µs');
    expect(formatLatency(0.0123)).toBe('12.3ms');
    expect(formatLatency(1.25)).toBe('1.25s');
  });
});
