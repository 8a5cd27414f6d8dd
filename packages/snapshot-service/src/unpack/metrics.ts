import { LATENCY_BUCKETS_S, serviceMeter } from '@berth/kit';

/** The snapshot-service's own instruments (bytes and files unpacked, time per layer). */
export interface UnpackMetrics {
  /** Records one layer applied and committed. */
  layer(r: { bytes: number; files: number; seconds: number; compression: string }): void;
}

let made: UnpackMetrics | undefined;

/**
 * The snapshot-service's unpack instruments, made on first use: after the process's metrics
 * started, or as no-ops where none did (tests). Prometheus names:
 * `berth_snapshot_unpacked_bytes_total`, `berth_snapshot_unpacked_files_total`,
 * `berth_snapshot_layer_unpack_duration_seconds`.
 */
export function unpackMetrics(): UnpackMetrics {
  if (made) return made;
  const m = serviceMeter('snapshot-service');
  const bytes = m.createCounter('berth.snapshot.unpacked', {
    description: 'Uncompressed bytes of layers unpacked into snapshots',
    unit: 'By',
  });
  const files = m.createCounter('berth.snapshot.unpacked.files', {
    description: 'Tar entries (files, directories, links) of layers unpacked into snapshots',
    unit: '{file}',
  });
  const duration = m.createHistogram('berth.snapshot.layer.unpack.duration', {
    description: 'Time to apply one layer and commit its snapshot',
    unit: 's',
    advice: { explicitBucketBoundaries: [...LATENCY_BUCKETS_S] },
  });
  bytes.add(0);
  files.add(0);
  made = {
    layer(r) {
      bytes.add(r.bytes);
      files.add(r.files);
      duration.record(r.seconds, { compression: r.compression });
    },
  };
  return made;
}
