import { serviceMeter } from '@berth/kit';

/** The image-service's own instruments (bytes pulled, blobs found already stored). */
export interface ContentMetrics {
  /** Records bytes fetched from a registry into the store. */
  pulled(bytes: number): void;
  /** Records a blob a pull needed that the store already held (fetched once for the node). */
  deduplicated(): void;
}

let made: ContentMetrics | undefined;

/**
 * The image-service's content instruments, made on first use: after the process's metrics
 * started, or as no-ops where none did (tests). Prometheus names: `berth_image_pulled_bytes_total`,
 * `berth_image_blobs_deduplicated_total`.
 */
export function contentMetrics(): ContentMetrics {
  if (made) return made;
  const m = serviceMeter('image-service');
  const pulled = m.createCounter('berth.image.pulled', {
    description: 'Bytes of blobs fetched from registries',
    unit: 'By',
  });
  const dedup = m.createCounter('berth.image.blobs.deduplicated', {
    description: 'Blobs a pull needed that were already in the content store',
    unit: '{blob}',
  });
  pulled.add(0);
  dedup.add(0);
  made = {
    pulled: (bytes) => pulled.add(bytes),
    deduplicated: () => dedup.add(1),
  };
  return made;
}
