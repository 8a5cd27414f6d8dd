import { type Meter, metrics } from '@opentelemetry/api';

export { type CatalogEntry, catalogEntryOf, METRIC_CATALOG, type MetricType } from './catalog.js';
export { EndpointStats } from './endpoint-stats.js';
export { histogramQuantile, parsePrometheusText, type Sample } from './prometheus-parse.js';
export { prometheusName, toPrometheusText } from './prometheus-text.js';
export { otlpMetricsConfigured, type RunningMetrics, startMetrics } from './provider.js';
export { LATENCY_BUCKETS_S, outcomeOf, RequestInstrument, RequestTracker } from './requests.js';
export { instrumentNats, instrumentProcess, instrumentRedis } from './runtime.js';
export { parseMetricsAddress, type ServiceMetrics, startServiceMetrics, writeTarget } from './targets.js';

/**
 * The meter a service makes its own instruments with (`berth.<service>`). Call it after the
 * process's metrics started (in setup or later): before that, or in a process without metrics
 * (tests, the CLI), its instruments record nothing.
 */
export function serviceMeter(service: string): Meter {
  return metrics.getMeter(`berth.${service}`);
}
