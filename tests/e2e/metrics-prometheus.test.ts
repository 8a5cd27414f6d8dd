import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { freePort } from '@berth/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { REPO_ROOT, which } from '../harness/berth.js';
import { type Stack, startStack, waitFor } from '../harness/stack.js';

// The real Prometheus (the client berth's metrics are for) scraping a `berth up` stack with
// infra/prometheus.yml: it finds every service through the target files, parses what they serve,
// and answers every query of the Grafana dashboard. Opt-in: runs where `prometheus` is on PATH
// (Debian: apt-get install prometheus).
const PROMETHEUS = which('prometheus');
const INFRA = join(REPO_ROOT, 'infra');

interface QueryResult {
  status: string;
  error?: string;
  data: { result: { metric: Record<string, string>; value: [number, string] }[] };
}

describe.skipIf(!PROMETHEUS)('Prometheus scraping a stack', () => {
  let stack: Stack;
  let prom: ChildProcess | undefined;
  let api = '';

  beforeAll(async () => {
    stack = await startStack();
    // infra/prometheus.yml as compose runs it, pointed at this stack's run root and scraping often.
    const config = parse(readFileSync(join(INFRA, 'prometheus.yml'), 'utf8')) as {
      global: Record<string, string>;
      scrape_configs: { file_sd_configs: { files: string[]; refresh_interval?: string }[] }[];
    };
    config.global.scrape_interval = '1s';
    for (const job of config.scrape_configs) {
      for (const sd of job.file_sd_configs) {
        sd.files = sd.files.map((f) => join(stack.runRoot, 'metrics', f.slice(f.lastIndexOf('/') + 1)));
        sd.refresh_interval = '1s';
      }
    }
    const file = join(stack.root, 'prometheus.yml');
    writeFileSync(file, stringify(config));
    const port = await freePort();
    api = `http://127.0.0.1:${port}/api/v1`;
    prom = spawn(
      PROMETHEUS as string,
      [
        `--config.file=${file}`,
        `--storage.tsdb.path=${join(stack.root, 'prometheus')}`,
        `--web.listen-address=127.0.0.1:${port}`,
      ],
      { stdio: 'ignore' },
    );
    await waitFor('every service to be an up target', async () => {
      const r = (await (await fetch(`${api}/targets`)).json()) as {
        data: { activeTargets: { labels: Record<string, string>; health: string }[] };
      };
      const up = r.data.activeTargets.filter((t) => t.health === 'up').map((t) => t.labels.service);
      return up.length === 5 ? up : undefined;
    });
  }, 120_000);

  afterAll(async () => {
    if (prom && prom.exitCode === null) {
      const gone = new Promise((r) => prom?.once('exit', r));
      prom.kill('SIGTERM');
      await gone;
    }
    await stack?.stop();
  }, 60_000);

  async function query(expr: string): Promise<QueryResult> {
    return (await (await fetch(`${api}/query?query=${encodeURIComponent(expr)}`)).json()) as QueryResult;
  }

  it('accepts infra/prometheus.yml (promtool)', () => {
    const promtool = which('promtool');
    if (!promtool) return;
    const r = spawnSync(promtool, ['check', 'config', join(INFRA, 'prometheus.yml')], { encoding: 'utf8' });
    expect(r.status, r.stdout + r.stderr).toBe(0);
  });

  it('keeps each series under its own service label', async () => {
    const r = await query('berth_requests_total');
    expect(r.status).toBe('success');
    const services = new Set(r.data.result.map((s) => s.metric.service));
    expect([...services].sort()).toEqual(
      ['cri-gateway', 'image-service', 'shim', 'snapshot-service', 'task-service'].sort(),
    );
    for (const s of r.data.result) expect(s.metric).not.toHaveProperty('exported_service');
  });

  it('answers every query of the dashboard, with data for each service row', async () => {
    const dashboard = JSON.parse(
      readFileSync(join(INFRA, 'grafana', 'dashboards', 'berth.json'), 'utf8'),
    ) as {
      panels: { type: string; title: string; targets?: { expr: string }[] }[];
    };
    let row = '';
    for (const p of dashboard.panels) {
      if (p.type === 'row') row = p.title;
      for (const t of p.targets ?? []) {
        // Grafana's $__rate_interval, as it would expand it for a 1 s scrape interval.
        const expr = t.expr.replaceAll('$__rate_interval', '1m');
        const r = await query(expr);
        expect(r.status, `${row} / ${p.title}: ${expr}: ${r.error ?? ''}`).toBe('success');
        // Requests arrive all the time (health probes), so each row's rate has data once two
        // scrapes of it are in.
        if (p.title === 'Requests rate') {
          await waitFor(
            `data for ${row} / ${p.title}`,
            async () => (await query(expr)).data.result.length > 0,
          );
        }
      }
    }
  }, 120_000);
});
