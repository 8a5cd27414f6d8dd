import { dirname, join } from 'node:path';
import { type Config, DEFAULT_CONFIG_FILE, serviceSetting } from '@berth/kit';
import { z } from 'zod';

/** Per-host registry settings, like containerd's hosts.toml: mirrors tried first, then the host. */
export const HostSettings = z.object({
  /** Mirror base URLs (`https://mirror.example` or `http://127.0.0.1:5000`), tried in order for pulls. */
  mirrors: z.array(z.string().url()).optional(),
  /** Allow plain HTTP (and skip nothing else) for this host. */
  insecure: z.boolean().optional(),
  /** Base URL serving this host's /v2/ API (docker.io -> https://registry-1.docker.io). */
  server: z.string().url().optional(),
  /** Extra request headers per endpoint base URL (a mirror's or the server's), as hosts.toml `header`. */
  headers: z.record(z.string(), z.record(z.string(), z.string())).optional(),
});
export type HostSettings = z.infer<typeof HostSettings>;

/** The image-service's settings (config `services.image-service.*`), with defaults. */
export interface ImageSettings {
  maxConcurrentDownloads: number;
  /**
   * A blob download with no byte received for this long, or a registry GET/HEAD with no answer,
   * fails with DEADLINE_EXCEEDED.
   */
  progressTimeoutMs: number;
  /** Expiry of the per-blob Redis lock; a crashed holder blocks others at most this long. */
  blobLockTtlMs: number;
  /** How long a pull waits for another writer of the same blob. */
  blobLockWaitMs: number;
  /** Per-host settings keyed by registry host (`docker.io`, `127.0.0.1:5000`). */
  hosts: Record<string, HostSettings>;
  /** Hosts allowed over plain HTTP besides localhost/127.0.0.1/::1. */
  insecureRegistries: string[];
  /**
   * Directories in containerd's hosts.toml layout (`<dir>/<host>/hosts.toml`, `_default`), read for
   * a host that `hosts` does not name; e.g. /etc/containerd/certs.d to keep containerd's settings.
   */
  hostsDirs: string[];
  /** Timeout of the snapshot-service unpack call. */
  unpackTimeoutMs: number;
  /** How long a pull's lease keeps its blobs from GC if the service dies (renewed while pulling). */
  leaseTtlMs: number;
  /**
   * How long the collection a removal with `gcLater` asks for waits for the removals to go quiet
   * (each new one restarts the wait, up to 10 times this after the first); 0 runs it at once.
   */
  gcDelayMs: number;
}

const S = 'image-service';

/**
 * berth's own directory in containerd's hosts.toml layout: certs.d beside the config file
 * (/etc/berth/certs.d; an installation with BERTH_CONFIG elsewhere keeps its own).
 */
export function defaultHostsDir(env: NodeJS.ProcessEnv = process.env): string {
  return join(dirname(env.BERTH_CONFIG ?? DEFAULT_CONFIG_FILE), 'certs.d');
}

/** Reads the image-service settings from the config, validating each. */
export function loadImageSettings(config: Config): ImageSettings {
  const hosts = serviceSetting(config, S, 'hosts', z.record(z.string(), HostSettings), {});
  // `mirrors: { host: [url...] }` is a shorthand for hosts.<host>.mirrors.
  const mirrors = serviceSetting(config, S, 'mirrors', z.record(z.string(), z.array(z.string().url())), {});
  for (const [host, list] of Object.entries(mirrors)) {
    hosts[host] = { ...hosts[host], mirrors: [...(hosts[host]?.mirrors ?? []), ...list] };
  }
  return {
    maxConcurrentDownloads: serviceSetting(
      config,
      S,
      'maxConcurrentDownloads',
      z.number().int().min(1).max(64),
      3,
    ),
    progressTimeoutMs: serviceSetting(config, S, 'progressTimeoutMs', z.number().int().positive(), 300_000),
    blobLockTtlMs: serviceSetting(config, S, 'blobLockTtlMs', z.number().int().min(200), 30_000),
    blobLockWaitMs: serviceSetting(config, S, 'blobLockWaitMs', z.number().int().positive(), 3_600_000),
    hosts,
    insecureRegistries: serviceSetting(config, S, 'insecureRegistries', z.array(z.string()), []),
    hostsDirs: serviceSetting(config, S, 'hostsDirs', z.array(z.string().startsWith('/')), [
      defaultHostsDir(),
    ]),
    unpackTimeoutMs: serviceSetting(config, S, 'unpackTimeoutMs', z.number().int().positive(), 1_800_000),
    leaseTtlMs: serviceSetting(config, S, 'leaseTtlMs', z.number().int().min(1000), 600_000),
    gcDelayMs: serviceSetting(config, S, 'gcDelayMs', z.number().int().min(0).max(600_000), 1_000),
  };
}
