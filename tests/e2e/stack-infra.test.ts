import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { freePort, tempDir } from '@berth/testing';
import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { REPO_ROOT, which } from '../harness/berth.js';
import { waitFor } from '../harness/stack.js';

const INFRA = join(REPO_ROOT, 'infra');

/** Parses a systemd unit into section -> key -> values (keys may repeat). */
function unit(file: string): Record<string, Record<string, string[]>> {
  const out: Record<string, Record<string, string[]>> = {};
  let section = '';
  for (const raw of readFileSync(file, 'utf8').split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    const header = /^\[(.+)\]$/.exec(line);
    if (header) {
      section = header[1] as string;
      out[section] ??= {};
      continue;
    }
    const eq = line.indexOf('=');
    const key = line.slice(0, eq);
    const sec = out[section] as Record<string, string[]>;
    sec[key] = [...(sec[key] ?? []), line.slice(eq + 1)];
  }
  return out;
}

describe('infra/', () => {
  it('nats-server.conf is accepted by nats-server -t and listens on loopback with JetStream', () => {
    const conf = join(INFRA, 'nats-server.conf');
    const r = spawnSync('nats-server', ['-t', '-c', conf], { encoding: 'utf8' });
    expect(r.status, r.stderr + r.stdout).toBe(0);
    const text = readFileSync(conf, 'utf8');
    expect(text).toMatch(/^listen: 127\.0\.0\.1:4222$/m);
    expect(text).toMatch(/^jetstream \{/m);
  });

  it('redis.conf starts a redis-server with AOF, no eviction, protected mode and no unix socket', async () => {
    const dir = await tempDir('redis-conf');
    const port = await freePort();
    const r = spawnSync('redis-server', ['--version'], { encoding: 'utf8' });
    expect(r.status).toBe(0);
    const { spawn } = await import('node:child_process');
    // The file as shipped, with only the port, data dir and supervision changed for a test.
    const proc = spawn(
      'redis-server',
      [join(INFRA, 'redis.conf'), '--port', String(port), '--dir', dir, '--supervised', 'no'],
      { stdio: 'ignore' },
    );
    const redis = new Redis({ host: '127.0.0.1', port, lazyConnect: true, retryStrategy: () => null });
    redis.on('error', () => undefined);
    try {
      await waitFor('redis-server to accept connections', async () => {
        if (proc.exitCode !== null) throw new Error(`redis-server exited ${proc.exitCode}`);
        await redis.connect().catch(() => undefined);
        return (await redis.ping().catch(() => '')) === 'PONG';
      });
      const get = async (k: string) => (await redis.config('GET', k)) as string[];
      expect(await get('appendonly')).toEqual(['appendonly', 'yes']);
      expect(await get('maxmemory-policy')).toEqual(['maxmemory-policy', 'noeviction']);
      expect(await get('protected-mode')).toEqual(['protected-mode', 'yes']);
      // No RDB snapshots: one that failed on a full disk kept writes refused long after (layout.md).
      expect(await get('save')).toEqual(['save', '']);
      expect(await get('stop-writes-on-bgsave-error')).toEqual(['stop-writes-on-bgsave-error', 'no']);
      expect(await get('unixsocket')).toEqual(['unixsocket', '']);
      expect((await get('bind'))[1]).toBe('127.0.0.1 -::1');
      await redis.set('berth:test', '1');
      expect(existsSync(join(dir, 'appendonlydir'))).toBe(true);
    } finally {
      redis.disconnect();
      proc.kill('SIGKILL');
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('has one systemd unit per service, and the shim unit never kills containers', () => {
    const dir = join(INFRA, 'systemd');
    const services = ['shim', 'snapshot-service', 'image-service', 'task-service', 'cri-gateway'];
    for (const s of services) {
      const u = unit(join(dir, `berth-${s}.service`));
      expect(u.Service?.ExecStart, s).toEqual([
        `/usr/bin/node --optimize-for-size --liftoff-only /opt/berth/packages/${s}/dist/main.js`,
      ]);
      expect(u.Unit?.PartOf, s).toEqual(['berth.target']);
      expect(u.Install?.WantedBy, s).toEqual(['berth.target']);
    }
    const shim = unit(join(dir, 'berth-shim.service'));
    expect(shim.Service?.KillMode).toEqual(['process']);
    expect(shim.Service?.Delegate).toEqual(['yes']);
    const target = unit(join(dir, 'berth.target'));
    const wants = (target.Unit?.Wants ?? []).join(' ').split(/\s+/);
    expect(wants.sort()).toEqual(services.map((s) => `berth-${s}.service`).sort());
  });

  it.runIf(which('systemd-analyze') !== undefined)(
    'systemd-analyze verify accepts every unit without a warning',
    () => {
      const dir = join(INFRA, 'systemd');
      const files = readdirSync(dir).map((f) => join(dir, f));
      const r = spawnSync('systemd-analyze', ['verify', ...files], { encoding: 'utf8' });
      expect(r.status, r.stderr).toBe(0);
      expect(r.stderr.trim()).toBe('');
    },
  );

  it('compose.yaml runs NATS, Redis, the collector and Jaeger on loopback, wired to each other', () => {
    const compose = parse(readFileSync(join(INFRA, 'compose.yaml'), 'utf8')) as {
      services: Record<string, { image: string; ports?: string[]; volumes?: string[] }>;
    };
    expect(Object.keys(compose.services).sort()).toEqual([
      'grafana',
      'jaeger',
      'nats',
      'otel-collector',
      'prometheus',
      'redis',
    ]);
    for (const [name, svc] of Object.entries(compose.services)) {
      expect(svc.image, name).toMatch(/:v?[0-9][\w.-]*$/);
      for (const p of svc.ports ?? []) expect(p, `${name} publishes ${p}`).toMatch(/^127\.0\.0\.1:/);
    }
    const mount = compose.services['otel-collector']?.volumes?.[0]?.split(':')[0] ?? '';
    const otel = parse(readFileSync(join(INFRA, mount), 'utf8')) as {
      receivers: Record<string, unknown>;
      processors: Record<string, unknown>;
      exporters: Record<string, { endpoint?: string }>;
      service: {
        pipelines: Record<string, { receivers: string[]; processors: string[]; exporters: string[] }>;
      };
    };
    const traces = otel.service.pipelines.traces!;
    for (const r of traces.receivers) expect(otel.receivers).toHaveProperty([r]);
    for (const p of traces.processors) expect(otel.processors).toHaveProperty([p]);
    for (const e of traces.exporters) expect(otel.exporters).toHaveProperty([e]);
    expect(otel.exporters['otlp/jaeger']?.endpoint).toBe('jaeger:4317');
  });
});
