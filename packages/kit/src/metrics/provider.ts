import { createServer, type Server } from 'node:http';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import { hostname } from 'node:os';
import { BerthError, Code } from '@berth/api/errors';
import { metrics } from '@opentelemetry/api';
import type { MeterProvider, MetricReader } from '@opentelemetry/sdk-metrics';
import { toPrometheusText } from './prometheus-text.js';

// Loaded only when a process starts metrics, as telemetry.ts loads the trace SDK: the CLI imports
// the kit for other things and must not pay for the SDK.
const load = createRequire(import.meta.url);

/** How long shutdown waits for the last OTLP push. */
const SHUTDOWN_FLUSH_MS = 2000;

/** How often metrics are pushed over OTLP when an endpoint is set (OTEL_METRIC_EXPORT_INTERVAL wins). */
const OTLP_INTERVAL_MS = 15_000;

/** True when OTEL_EXPORTER_OTLP_ENDPOINT (or the metrics variant) asks for metrics to be pushed. */
export function otlpMetricsConfigured(env: NodeJS.ProcessEnv = process.env): boolean {
  return Boolean(env.OTEL_EXPORTER_OTLP_ENDPOINT || env.OTEL_EXPORTER_OTLP_METRICS_ENDPOINT);
}

/** Where a process serves its metrics, parsed from `host:port` (port 0: any free port). */
export interface MetricsAddress {
  host: string;
  port: number;
}

/** A process's running metrics: the Prometheus endpoint's URL, and how to stop them. */
export interface RunningMetrics {
  /** `http://host:port/metrics`, with the port actually bound. */
  url: string;
  /** Renders the current metrics as Prometheus text (what a scrape returns). */
  scrape(): Promise<string>;
  shutdown(): Promise<void>;
}

/**
 * Starts the OpenTelemetry metrics SDK for this process and registers it globally, so instruments
 * made with `metrics.getMeter()` record. The Prometheus endpoint serves GET /metrics on `address`;
 * with OTEL_EXPORTER_OTLP_ENDPOINT set, metrics are also pushed over OTLP/HTTP (JSON) every 15 s.
 * Every series carries a `service` label.
 */
export async function startMetrics(opts: {
  service: string;
  version: string;
  node: string;
  address: MetricsAddress;
  /**
   * The services of a co-hosted process: the series of meter `berth.<name>` get `service=<name>`,
   * every other series (the process's own figures) `service=<opts.service>`.
   */
  cohosted?: readonly string[];
}): Promise<RunningMetrics> {
  const sdk = load('@opentelemetry/sdk-metrics') as typeof import('@opentelemetry/sdk-metrics');
  const { resourceFromAttributes } = load(
    '@opentelemetry/resources',
  ) as typeof import('@opentelemetry/resources');

  // A reader that only collects when asked: the Prometheus endpoint pulls through it.
  class PullReader extends sdk.MetricReader {
    protected async onForceFlush(): Promise<void> {}
    protected async onShutdown(): Promise<void> {}
  }
  const pull = new PullReader();
  const readers: MetricReader[] = [pull];
  if (otlpMetricsConfigured()) {
    const { OTLPExporterBase } = load(
      '@opentelemetry/otlp-exporter-base',
    ) as typeof import('@opentelemetry/otlp-exporter-base');
    const http = load(
      '@opentelemetry/otlp-exporter-base/node-http',
    ) as typeof import('@opentelemetry/otlp-exporter-base/node-http');
    const transformer = load(
      '@opentelemetry/otlp-transformer',
    ) as typeof import('@opentelemetry/otlp-transformer');
    // What @opentelemetry/exporter-metrics-otlp-http builds, from the same packages the trace
    // exporter uses: that exporter has no release matching them, and a second copy of the SDK
    // would cost every service memory.
    const delegate = http.createOtlpHttpExportDelegate(
      http.convertLegacyHttpOptions({}, 'METRICS', 'v1/metrics', { 'Content-Type': 'application/json' }),
      transformer.JsonMetricsSerializer,
      'otlp_http_metric_exporter',
      transformer.MetricsExporterMetricsHelper,
      undefined,
    );
    const interval = Number(process.env.OTEL_METRIC_EXPORT_INTERVAL) || OTLP_INTERVAL_MS;
    readers.push(
      new sdk.PeriodicExportingMetricReader({
        exporter: new OTLPExporterBase(delegate),
        exportIntervalMillis: interval,
        exportTimeoutMillis: Math.min(interval, 5000),
      }),
    );
  }
  const provider: MeterProvider = new sdk.MeterProvider({
    resource: resourceFromAttributes({
      'service.name': opts.service,
      'service.version': opts.version,
      'host.name': hostname(),
      'process.pid': process.pid,
      'berth.node': opts.node,
    }),
    readers,
  });
  metrics.setGlobalMeterProvider(provider);

  const labels = { service: opts.service };
  const cohosted = new Set(opts.cohosted ?? []);
  const scopeLabels = (scope: string) => {
    const name = scope.startsWith('berth.') ? scope.slice('berth.'.length) : '';
    return cohosted.has(name) ? { service: name } : undefined;
  };
  const scrape = async (): Promise<string> => {
    const { resourceMetrics } = await pull.collect();
    return toPrometheusText(resourceMetrics, labels, scopeLabels);
  };
  const server = createServer((req, res) => {
    if (req.method !== 'GET' || (req.url ?? '').split('?')[0] !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('only GET /metrics is served here\n');
      return;
    }
    scrape().then(
      (text) => res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' }).end(text),
      (err: Error) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`${err.message}\n`),
    );
  });
  await listen(server, opts.address);
  const bound = server.address() as AddressInfo;
  const host = bound.family === 'IPv6' ? `[${bound.address}]` : bound.address;
  return {
    url: `http://${host}:${bound.port}/metrics`,
    scrape,
    async shutdown() {
      const closed = new Promise<void>((r) => server.close(() => r()));
      // A scraper's keep-alive connection would hold close() open.
      server.closeAllConnections();
      await closed;
      metrics.disable();
      // The last OTLP push waits for the collector; an exiting service waits at most this long.
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<void>((r) => {
        timer = setTimeout(r, SHUTDOWN_FLUSH_MS);
        timer.unref();
      });
      await Promise.race([provider.shutdown().catch(() => undefined), late]).finally(() =>
        clearTimeout(timer),
      );
    },
  };
}

function listen(server: Server, address: MetricsAddress): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) =>
      reject(
        new BerthError(
          Code.FAILED_PRECONDITION,
          `cannot serve metrics on ${address.host}:${address.port}: ${err.code ?? err.message} ` +
            '(set metricsAddress or BERTH_METRICS_ADDRESS to a free host:port, port 0 for any, or "off")',
        ),
      ),
    );
    server.listen(address.port, address.host, () => resolve());
  });
}
