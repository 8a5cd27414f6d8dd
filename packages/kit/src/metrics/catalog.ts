/** How Prometheus sees a metric family. */
export type MetricType = 'counter' | 'gauge' | 'histogram';

/** One metric family berth exports, by its Prometheus name. */
export interface CatalogEntry {
  name: string;
  type: MetricType;
  /** The services exporting it: `all` for what the kit records in every service process. */
  services: 'all' | readonly string[];
  /** Labels besides `service` that every series of it carries. */
  labels: readonly string[];
}

/**
 * Every metric family berth's services export, by Prometheus name: what infra/'s dashboard may
 * query and `berth top` reads. The instruments are defined where they are recorded (the kit,
 * each service's metrics module); tests scrape real services and check both directions, so this
 * list cannot drift from them.
 */
export const METRIC_CATALOG: readonly CatalogEntry[] = [
  { name: 'berth_requests_total', type: 'counter', services: 'all', labels: ['op', 'outcome'] },
  { name: 'berth_request_duration_seconds', type: 'histogram', services: 'all', labels: ['op', 'outcome'] },
  { name: 'berth_requests_in_flight', type: 'gauge', services: 'all', labels: ['op'] },
  { name: 'berth_nats_reconnects_total', type: 'counter', services: 'all', labels: [] },
  {
    name: 'berth_redis_command_duration_seconds',
    type: 'histogram',
    services: 'all',
    labels: ['command', 'outcome'],
  },
  { name: 'process_cpu_seconds_total', type: 'counter', services: 'all', labels: [] },
  { name: 'process_resident_memory_bytes', type: 'gauge', services: 'all', labels: [] },
  { name: 'nodejs_heap_used_bytes', type: 'gauge', services: 'all', labels: [] },
  { name: 'nodejs_eventloop_lag_seconds', type: 'gauge', services: 'all', labels: ['quantile'] },
  { name: 'berth_image_pulled_bytes_total', type: 'counter', services: ['image-service'], labels: [] },
  { name: 'berth_image_blobs_deduplicated_total', type: 'counter', services: ['image-service'], labels: [] },
  {
    name: 'berth_snapshot_unpacked_bytes_total',
    type: 'counter',
    services: ['snapshot-service'],
    labels: [],
  },
  {
    name: 'berth_snapshot_unpacked_files_total',
    type: 'counter',
    services: ['snapshot-service'],
    labels: [],
  },
  {
    name: 'berth_snapshot_layer_unpack_duration_seconds',
    type: 'histogram',
    services: ['snapshot-service'],
    labels: ['compression'],
  },
  {
    name: 'berth_shim_runc_duration_seconds',
    type: 'histogram',
    services: ['shim'],
    labels: ['command', 'outcome'],
  },
  { name: 'berth_shim_exits_total', type: 'counter', services: ['shim'], labels: ['kind', 'reason'] },
  { name: 'berth_shim_containers', type: 'gauge', services: ['shim'], labels: ['status'] },
  {
    name: 'berth_cri_requests_total',
    type: 'counter',
    services: ['cri-gateway'],
    labels: ['rpc', 'outcome'],
  },
  {
    name: 'berth_cri_request_duration_seconds',
    type: 'histogram',
    services: ['cri-gateway'],
    labels: ['rpc', 'outcome'],
  },
  { name: 'berth_cri_requests_in_flight', type: 'gauge', services: ['cri-gateway'], labels: ['rpc'] },
  {
    name: 'berth_cri_streaming_sessions_total',
    type: 'counter',
    services: ['cri-gateway'],
    labels: ['kind'],
  },
  {
    name: 'berth_cri_streaming_sessions_active',
    type: 'gauge',
    services: ['cri-gateway'],
    labels: ['kind'],
  },
  {
    name: 'berth_cri_streaming_bytes_total',
    type: 'counter',
    services: ['cri-gateway'],
    labels: ['kind', 'direction'],
  },
  {
    name: 'berth_cri_streaming_errors_total',
    type: 'counter',
    services: ['cri-gateway'],
    labels: ['kind', 'stage'],
  },
];

/**
 * The catalog family a sample or query name belongs to (`x_bucket`, `x_sum`, `x_count` of a
 * histogram map to `x`), or undefined when berth exports no such metric.
 */
export function catalogEntryOf(name: string): CatalogEntry | undefined {
  const exact = METRIC_CATALOG.find((e) => e.name === name);
  if (exact) return exact;
  const base = name.replace(/_(bucket|sum|count)$/, '');
  const h = METRIC_CATALOG.find((e) => e.name === base);
  return h?.type === 'histogram' ? h : undefined;
}
