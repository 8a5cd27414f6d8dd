import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { StackPlan } from './plan.js';
import { checkPrerequisites } from './prereqs.js';

let dir: string;
let main: string;
const withOverlay = 'nodev\tproc\nnodev\toverlay\n';

function plan(embedded: ('nats-server' | 'redis-server')[]): StackPlan {
  return {
    nodeId: 'n',
    stateRoot: '/s',
    runRoot: '/r',
    natsUrl: 'nats://x',
    redisUrl: 'redis://x',
    stopGraceMs: 1,
    embedded: embedded.map((kind) => ({ kind, port: 1, dataDir: '/d', logFile: '/l' })),
    services: [{ service: 'shim', replica: 1, main, v8Flags: [], logFile: '/l' }],
  };
}

function bin(...tools: string[]): string {
  const b = mkdtempSync(join(dir, 'bin-'));
  for (const t of tools) {
    writeFileSync(join(b, t), '#!/bin/sh\n');
    chmodSync(join(b, t), 0o755);
  }
  return b;
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'berth-prereq-'));
  main = join(dir, 'main.js');
  writeFileSync(main, '');
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('checkPrerequisites', () => {
  it('passes when everything is there', () => {
    const path = bin('nats-server', 'redis-server', 'runc', 'conmon');
    expect(
      checkPrerequisites(plan(['nats-server', 'redis-server']), { path, uid: 0, filesystems: withOverlay }),
    ).toEqual([]);
  });

  it('gives one line per missing tool, naming the fix', () => {
    const path = bin('conmon');
    expect(
      checkPrerequisites(plan(['nats-server', 'redis-server']), { path, uid: 0, filesystems: withOverlay }),
    ).toEqual([
      'nats-server not found: apt-get install nats-server (or set BERTH_NATS_URL / natsUrl to use a running NATS)',
      'redis-server not found: apt-get install redis-server (or set BERTH_REDIS_URL / redisUrl to use a running Redis)',
      'runc not found: apt-get install runc',
    ]);
  });

  it('needs nats-server and redis-server only when it embeds them', () => {
    const path = bin('runc', 'conmon');
    expect(checkPrerequisites(plan([]), { path, uid: 0, filesystems: withOverlay })).toEqual([]);
  });

  it('names root, overlayfs and unbuilt services', () => {
    const path = bin('runc', 'conmon');
    const p = plan([]);
    p.services.push({
      service: 'task-service',
      replica: 1,
      main: join(dir, 'missing.js'),
      v8Flags: [],
      logFile: '/l',
    });
    expect(checkPrerequisites(p, { path, uid: 1000, filesystems: 'nodev\tproc\n' })).toEqual([
      'berth up must run as root (uid is 1000): run it with sudo',
      'overlayfs is not available (no "overlay" in /proc/filesystems): run modprobe overlay',
      `task-service is not built (no ${join(dir, 'missing.js')}): run pnpm -w run build`,
    ]);
  });
});
