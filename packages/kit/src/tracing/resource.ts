import { hostname } from 'node:os';
import type { StoredValue } from './span-record.js';

/** Who made a span: the process's service, version, replica and node. */
export interface ResourceInput {
  service: string;
  version: string;
  node: string;
  /** service.instance.id: one per process (a replica of a service, one CLI command). */
  instance: string;
}

/**
 * Parses OTEL_RESOURCE_ATTRIBUTES (`key=value,key=value`, values percent-encoded) as the
 * OpenTelemetry specification defines it; malformed entries are skipped.
 */
export function parseResourceAttributes(value: string | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of (value ?? '').split(',')) {
    const eq = part.indexOf('=');
    if (eq <= 0) continue;
    const key = part.slice(0, eq).trim();
    try {
      out[key] = decodeURIComponent(part.slice(eq + 1).trim());
    } catch {
      // A stray % that is not an escape: the entry is invalid.
    }
  }
  return out;
}

/**
 * The resource attributes of a berth process: service.name/version/instance.id, the real
 * host.name, process.pid and berth.node; then OTEL_RESOURCE_ATTRIBUTES over them and
 * OTEL_SERVICE_NAME over all, as the specification orders them.
 */
export function resourceAttributes(
  r: ResourceInput,
  env: NodeJS.ProcessEnv = process.env,
): Record<string, StoredValue> {
  const attrs: Record<string, StoredValue> = {
    'service.name': r.service,
    'service.version': r.version,
    'service.instance.id': r.instance,
    'host.name': hostname(),
    'process.pid': process.pid,
    'berth.node': r.node,
    ...parseResourceAttributes(env.OTEL_RESOURCE_ATTRIBUTES),
  };
  if (env.OTEL_SERVICE_NAME) attrs['service.name'] = env.OTEL_SERVICE_NAME;
  return attrs;
}

/** The OTLP/HTTP traces URL from the environment, or undefined when export is not configured. */
export function otlpTracesUrl(env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) return env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT;
  const base = env.OTEL_EXPORTER_OTLP_ENDPOINT;
  if (!base) return undefined;
  return `${base.replace(/\/+$/, '')}/v1/traces`;
}

/** The extra OTLP request headers from OTEL_EXPORTER_OTLP_(TRACES_)HEADERS. */
export function otlpHeaders(env: NodeJS.ProcessEnv = process.env): Record<string, string> {
  return {
    ...parseResourceAttributes(env.OTEL_EXPORTER_OTLP_HEADERS),
    ...parseResourceAttributes(env.OTEL_EXPORTER_OTLP_TRACES_HEADERS),
  };
}
