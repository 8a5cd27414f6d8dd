import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { catalogEntryOf } from '@berth/kit/metrics-catalog';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { REPO_ROOT } from '../harness/berth.js';

// infra/'s Prometheus scrape config and Grafana dashboard, checked against what berth exports:
// the metric catalog, which the metrics tests hold to what real services serve.

const INFRA = join(REPO_ROOT, 'infra');
const SERVICES = ['image-service', 'snapshot-service', 'task-service', 'shim', 'cri-gateway'];

interface Panel {
  type: string;
  title: string;
  datasource?: { uid: string };
  targets?: { expr: string }[];
}

const dashboard = JSON.parse(readFileSync(join(INFRA, 'grafana', 'dashboards', 'berth.json'), 'utf8')) as {
  uid: string;
  panels: Panel[];
};

const KEYWORDS = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'bool', 'offset']);
KEYWORDS.add('and').add('or').add('unless');

/**
 * The metric names a PromQL expression selects: the identifiers left once label matchers, range
 * durations, grouping clauses and numbers are removed, other than function names and keywords.
 */
function metricsOf(expr: string): string[] {
  const bare = expr
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\b(by|without|on|ignoring)\s*\([^)]*\)/g, ' ')
    .replace(/\b\d+(\.\d+)?\b/g, ' ');
  return [...bare.matchAll(/([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\()?/g)]
    .filter((m) => m[2] === undefined && !KEYWORDS.has(m[1] as string))
    .map((m) => m[1] as string);
}

/** The dashboard's panels grouped under the row that precedes them. */
function rows(): Map<string, Panel[]> {
  const out = new Map<string, Panel[]>();
  let current: Panel[] | undefined;
  for (const p of dashboard.panels) {
    if (p.type === 'row') {
      current = [];
      out.set(p.title, current);
    } else current?.push(p);
  }
  return out;
}

describe('the query check', () => {
  it('finds the metrics of a query, and only them', () => {
    expect(
      metricsOf('histogram_quantile(0.95, sum by (le) (rate(x_seconds_bucket{service="a",le!="1"}[5m])))'),
    ).toEqual(['x_seconds_bucket']);
    expect(metricsOf('sum by (service) (increase(y_total[$__rate_interval])) / z')).toEqual(['y_total', 'z']);
  });
});

describe('the Grafana dashboard', () => {
  it('queries only metrics berth exports', () => {
    const exprs = dashboard.panels.flatMap((p) => (p.targets ?? []).map((t) => t.expr));
    expect(exprs.length).toBeGreaterThan(20);
    for (const expr of exprs) {
      const names = metricsOf(expr);
      expect(names.length, `no metric in: ${expr}`).toBeGreaterThan(0);
      for (const n of names)
        expect(catalogEntryOf(n), `${n} (in ${expr}) is not exported by berth`).toBeDefined();
    }
  });

  it('has a row per service with rate, errors, latency p50/p95/p99 and saturation', () => {
    const byRow = rows();
    for (const service of SERVICES) {
      const panels = byRow.get(service);
      expect(panels, `row ${service}`).toBeDefined();
      const titles = (panels ?? []).map((p) => p.title);
      for (const want of ['Requests rate', 'Requests errors', 'Requests latency', 'Saturation']) {
        expect(titles, service).toContain(want);
      }
      for (const p of panels ?? []) {
        // Every query of a service's row is about that service (series carry a `service` label).
        for (const t of p.targets ?? [])
          expect(t.expr, `${service}: ${p.title}`).toContain(`service="${service}"`);
      }
      const latency = (panels ?? []).find((p) => p.title === 'Requests latency');
      const quantiles = (latency?.targets ?? []).map((t) => /histogram_quantile\(([\d.]+)/.exec(t.expr)?.[1]);
      expect(quantiles).toEqual(['0.5', '0.95', '0.99']);
      const errors = (panels ?? []).find((p) => p.title === 'Requests errors');
      expect(errors?.targets?.[0]?.expr).toContain('outcome!="ok"');
    }
  });

  it('uses the provisioned Prometheus datasource', () => {
    const ds = parse(
      readFileSync(join(INFRA, 'grafana', 'provisioning', 'datasources', 'prometheus.yaml'), 'utf8'),
    ) as {
      datasources: { uid: string; url: string }[];
    };
    const uid = ds.datasources[0]?.uid;
    for (const p of dashboard.panels.filter((x) => x.type !== 'row'))
      expect(p.datasource?.uid, p.title).toBe(uid);
    expect(ds.datasources[0]?.url).toBe('http://127.0.0.1:9090');
  });
});

describe('Prometheus in compose', () => {
  const compose = parse(readFileSync(join(INFRA, 'compose.yaml'), 'utf8')) as {
    services: Record<
      string,
      { network_mode?: string; command?: string[]; volumes?: string[]; environment?: Record<string, string> }
    >;
  };

  it('scrapes the file_sd targets berth services write, with their own service labels', () => {
    const prom = compose.services.prometheus;
    expect(prom?.network_mode).toBe('host');
    expect(prom?.command).toContain('--web.listen-address=127.0.0.1:9090');
    const mounts = new Map((prom?.volumes ?? []).map((v) => [v.split(':')[1], v.split(':')[0]]));
    const config = parse(
      readFileSync(join(INFRA, mounts.get('/etc/prometheus/prometheus.yml') ?? ''), 'utf8'),
    ) as {
      scrape_configs: { job_name: string; honor_labels?: boolean; file_sd_configs: { files: string[] }[] }[];
    };
    const job = config.scrape_configs.find((j) => j.job_name === 'berth');
    expect(job?.honor_labels).toBe(true);
    const pattern = job?.file_sd_configs[0]?.files[0] ?? '';
    // The mounted directory is the default run root's metrics targets directory (kit layout).
    expect(mounts.get(pattern.slice(0, pattern.lastIndexOf('/')))).toBe('/run/berth/metrics');
    expect(compose.services.grafana?.environment?.GF_SERVER_HTTP_ADDR).toBe('127.0.0.1');
    const dashboards = readdirSync(join(INFRA, 'grafana', 'dashboards'));
    expect(dashboards).toEqual(['berth.json']);
  });
});
