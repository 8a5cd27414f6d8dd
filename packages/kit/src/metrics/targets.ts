import { mkdirSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { pidAlive } from '../pid-alive.js';
import { type MetricsAddress, type RunningMetrics, startMetrics } from './provider.js';
import { instrumentProcess } from './runtime.js';

/** Parses a metrics address (`host:port`, `[v6]:port`), or undefined for `off`. */
export function parseMetricsAddress(text: string): MetricsAddress | undefined {
  if (text === 'off') return undefined;
  const colon = text.lastIndexOf(':');
  const host = text.slice(0, colon).replace(/^\[(.*)\]$/, '$1');
  return { host, port: Number(text.slice(colon + 1)) };
}

/**
 * Writes this process's Prometheus file_sd target (`<service>-<pid>.json` in `dir`) naming where
 * its metrics are, with service, node and pid labels; removes the files of processes that are
 * gone. Written to a temp name and renamed, so Prometheus never reads half a file.
 */
export function writeTarget(dir: string, t: { service: string; node: string; url: string }): string {
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  for (const f of readdirSync(dir)) {
    const m = /-(\d+)\.json$/.exec(f);
    if (m && !pidAlive(Number(m[1]))) rmSync(join(dir, f), { force: true });
  }
  const u = new URL(t.url);
  const file = join(dir, `${t.service}-${process.pid}.json`);
  const body = [
    {
      targets: [u.host],
      labels: { service: t.service, node: t.node, pid: String(process.pid), __metrics_path__: u.pathname },
    },
  ];
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(body, null, 2)}\n`);
  renameSync(tmp, file);
  return file;
}

/** A service process's metrics as runService runs them: the endpoint, its target file, the stop. */
export interface ServiceMetrics {
  url: string;
  stop(): Promise<void>;
}

/**
 * Starts a service process's metrics: the SDK with its Prometheus endpoint on `address` (and
 * OTLP when configured), the process figures, and the file_sd target under `targetsDir`.
 * Undefined when metrics are `off`.
 */
export async function startServiceMetrics(opts: {
  service: string;
  version: string;
  node: string;
  address: string;
  targetsDir: string;
  log: Logger;
  /** The services a co-hosted process runs, each labelled by its own name (see startMetrics). */
  cohosted?: readonly string[];
}): Promise<ServiceMetrics | undefined> {
  const address = parseMetricsAddress(opts.address);
  if (!address) return undefined;
  const running: RunningMetrics = await startMetrics({ ...opts, address });
  const stopProcess = instrumentProcess();
  let file: string | undefined;
  try {
    file = writeTarget(opts.targetsDir, { service: opts.service, node: opts.node, url: running.url });
  } catch (err) {
    // A read-only run root costs Prometheus discovery only; the endpoint itself still serves.
    opts.log.warn({ err, dir: opts.targetsDir }, 'could not write the Prometheus target file');
  }
  return {
    url: running.url,
    async stop() {
      stopProcess();
      if (file) rmSync(file, { force: true });
      await running.shutdown();
    },
  };
}
