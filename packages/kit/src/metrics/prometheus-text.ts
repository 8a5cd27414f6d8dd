import type { Attributes } from '@opentelemetry/api';
import type { MetricData, ResourceMetrics } from '@opentelemetry/sdk-metrics';

// Data point kinds of @opentelemetry/sdk-metrics (its DataPointType), spelled out so this module
// needs only the SDK's types and not the SDK itself at run time.
const HISTOGRAM = 0;
const EXPONENTIAL_HISTOGRAM = 1;
const GAUGE = 2;
const SUM = 3;

/** Prometheus unit words for OpenTelemetry (UCUM) units; `{annotations}` become no word. */
const UNIT_WORDS: Record<string, string> = {
  s: 'seconds',
  ms: 'milliseconds',
  By: 'bytes',
  '1': 'ratio',
};

/**
 * The Prometheus name of an OpenTelemetry instrument, by the OpenTelemetry-to-Prometheus rules:
 * characters other than [a-zA-Z0-9_:] become `_`, the unit word is appended (`s` -> `_seconds`,
 * `By` -> `_bytes`), and monotonic sums (counters) end in `_total`.
 */
export function prometheusName(name: string, unit: string, counter: boolean): string {
  let out = name.replace(/[^a-zA-Z0-9_:]/g, '_');
  const word = UNIT_WORDS[unit.replace(/\{[^}]*\}/g, '')];
  if (word && !out.endsWith(`_${word}`)) out += `_${word}`;
  if (counter && !out.endsWith('_total')) out += '_total';
  return out;
}

function escapeValue(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

function labelText(labels: Attributes, extra?: [string, string]): string {
  const parts: string[] = [];
  for (const [k, v] of Object.entries(labels)) {
    if (v === undefined) continue;
    parts.push(`${k.replace(/[^a-zA-Z0-9_]/g, '_')}="${escapeValue(String(v))}"`);
  }
  if (extra) parts.push(`${extra[0]}="${escapeValue(extra[1])}"`);
  return parts.length ? `{${parts.join(',')}}` : '';
}

function num(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Number.POSITIVE_INFINITY) return '+Inf';
  if (v === Number.NEGATIVE_INFINITY) return '-Inf';
  return String(v);
}

interface Family {
  type: 'counter' | 'gauge' | 'histogram';
  help: string;
  lines: string[];
}

function addPoints(m: MetricData, base: Attributes, fam: Family, name: string): void {
  for (const dp of m.dataPoints as { attributes: Attributes; value: unknown }[]) {
    const labels = { ...base, ...dp.attributes };
    if (m.dataPointType === HISTOGRAM) {
      const h = dp.value as {
        buckets: { boundaries: number[]; counts: number[] };
        sum?: number;
        count: number;
      };
      let cumulative = 0;
      h.buckets.boundaries.forEach((b, i) => {
        cumulative += h.buckets.counts[i] ?? 0;
        fam.lines.push(`${name}_bucket${labelText(labels, ['le', num(b)])} ${cumulative}`);
      });
      fam.lines.push(`${name}_bucket${labelText(labels, ['le', '+Inf'])} ${h.count}`);
      fam.lines.push(`${name}_sum${labelText(labels)} ${num(h.sum ?? 0)}`);
      fam.lines.push(`${name}_count${labelText(labels)} ${h.count}`);
    } else {
      fam.lines.push(`${name}${labelText(labels)} ${num(dp.value as number)}`);
    }
  }
}

/**
 * Renders collected metrics in the Prometheus text exposition format (version 0.0.4). Every
 * series carries `labels` (berth adds `service`), then its own attributes; `scopeLabels` may
 * replace `labels` for the series of one instrumentation scope (a co-hosted process labels each
 * service's meter `berth.<service>` with its own service). Exponential histograms are not
 * rendered: berth records none.
 */
export function toPrometheusText(
  rm: ResourceMetrics,
  labels: Attributes = {},
  scopeLabels?: (scope: string) => Attributes | undefined,
): string {
  const families = new Map<string, Family>();
  for (const scope of rm.scopeMetrics) {
    const base = scopeLabels?.(scope.scope.name) ?? labels;
    for (const m of scope.metrics) {
      if (m.dataPointType === EXPONENTIAL_HISTOGRAM) continue;
      const counter = m.dataPointType === SUM && m.isMonotonic;
      const name = prometheusName(m.descriptor.name, m.descriptor.unit, counter);
      const type = m.dataPointType === HISTOGRAM ? 'histogram' : counter ? 'counter' : 'gauge';
      let fam = families.get(name);
      if (!fam) {
        fam = { type, help: m.descriptor.description, lines: [] };
        families.set(name, fam);
      }
      if (m.dataPointType === GAUGE || m.dataPointType === SUM || m.dataPointType === HISTOGRAM) {
        addPoints(m, base, fam, name);
      }
    }
  }
  const out: string[] = [];
  for (const [name, fam] of families) {
    if (fam.help) out.push(`# HELP ${name} ${fam.help.replace(/\\/g, '\\\\').replace(/\n/g, '\\n')}`);
    out.push(`# TYPE ${name} ${fam.type}`);
    out.push(...fam.lines);
  }
  return out.length ? `${out.join('\n')}\n` : '';
}
