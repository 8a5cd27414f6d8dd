import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ShimApi, subjectOf } from '@berth/api';
import { call, connectNats, keys } from '@berth/kit';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type SdkStack, startSdkStack } from './sdk-stack.js';

// Under `berth up` every service and the CLI log in to the embedded NATS and Redis as themselves,
// with only what their role needs: the whole workflow (pull, run, exec, events, status) still
// works, nothing is refused on the way, and what a role lacks is refused by the servers.

let s: SdkStack;

/** The URLs a running service got from the supervisor, read from its environment. */
function serviceEnv(name: string): { nats: string; redis: string } {
  const child = s.stack.state()?.children.find((c) => c.name === name && c.pid !== null);
  if (!child?.pid) throw new Error(`${name} does not run`);
  const env = new Map(
    readFileSync(`/proc/${child.pid}/environ`, 'utf8')
      .split('\0')
      .map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)] as const),
  );
  return { nats: env.get('BERTH_NATS_URL') ?? '', redis: env.get('BERTH_REDIS_URL') ?? '' };
}

function violations(): string[] {
  const log = readFileSync(join(s.stack.stateRoot, 'services', 'nats-server.log'), 'utf8');
  return log.split('\n').filter((l) => /Violation/i.test(l));
}

beforeAll(async () => {
  s = await startSdkStack();
}, 120_000);
afterAll(async () => {
  if (s) {
    const ids = (await s.stack.berth('ps', '-aq')).stdout.split(/\s+/).filter(Boolean);
    if (ids.length) await s.stack.berth('rm', '-f', ...ids);
    await s.stop();
  }
}, 60_000);

describe('berth up with one user per service', () => {
  it('gives each service its own NATS and Redis user, and the CLI its own NATS user', () => {
    const node = s.stack.nodeId;
    for (const name of ['image-service', 'snapshot-service', 'task-service', 'shim', 'cri-gateway']) {
      const env = serviceEnv(name);
      expect(new URL(env.nats).username, name).toBe(`${name}.${node}`);
      expect(new URL(env.redis).username, name).toBe(`${name}.${node}`);
    }
    const st = JSON.parse(readFileSync(join(s.stack.runRoot, 'supervisor.json'), 'utf8')) as {
      cliNatsUrl?: string;
    };
    expect(new URL(st.cliNatsUrl ?? '').username).toBe(`cli.${node}`);
  });

  it('pulls, runs, execs and reports exits end to end, and the servers refuse nothing on the way', async () => {
    const pull = await s.stack.berth('pull', s.image);
    expect(pull.code, pull.stderr).toBe(0);
    const run = await s.stack.berth('run', '--rm', s.image, 'sh', '-c', 'echo acl-ok; exit 3');
    expect(run.stdout.trim()).toBe('acl-ok');
    expect(run.code).toBe(3);
    const id = (
      await s.stack.berth('run', '-d', '--name', 'acl-sleeper', s.image, 'sleep', '60')
    ).stdout.trim();
    expect(id).toMatch(/^[0-9a-f]{64}$/);
    const exec = await s.stack.berth('exec', 'acl-sleeper', 'echo', 'in-exec');
    expect(exec.stdout.trim()).toBe('in-exec');
    expect((await s.stack.berth('rm', '-f', 'acl-sleeper')).code).toBe(0);
    const { code, json } = await s.stack.status();
    expect(code).toBe(0);
    expect(json.ok).toBe(true);
    // A permission a role lacks would show as a refusal in the server's log.
    expect(violations()).toEqual([]);
  });

  it("the gateway's login cannot publish to the shim's container subjects, only to its network ones", async () => {
    const gw = serviceEnv('cri-gateway');
    const nc = await connectNats({
      url: gw.nats,
      name: 'e2e-as-gateway',
      extra: { maxReconnectAttempts: 0 },
    });
    try {
      const node = s.stack.nodeId;
      const list = await call(nc, ShimApi, 'network-list', {}, { node });
      expect(Array.isArray(list.pods)).toBe(true);
      for (const op of ['create', 'kill', 'delete']) {
        await expect(
          nc.request(subjectOf(ShimApi, op, node), new TextEncoder().encode('{}'), { timeout: 5000 }),
          op,
        ).rejects.toMatchObject({ code: 'PERMISSIONS_VIOLATION' });
      }
    } finally {
      await nc.close();
    }
    // The server logs each refusal: the "nothing refused" check above can see one.
    expect(violations().some((l) => l.includes(subjectOf(ShimApi, 'create', s.stack.nodeId)))).toBe(true);
  });

  it('shows no service password on a command line or in a log', () => {
    const names = ['image-service', 'snapshot-service', 'task-service', 'shim', 'cri-gateway'];
    const passwords = names.flatMap((n) => {
      const env = serviceEnv(n);
      return [
        decodeURIComponent(new URL(env.nats).password),
        decodeURIComponent(new URL(env.redis).password),
      ];
    });
    expect(new Set(passwords).size).toBe(names.length * 2);
    const st = s.stack.state();
    const texts = [
      ...(st?.children ?? []).flatMap((c) => (c.pid ? [readFileSync(`/proc/${c.pid}/cmdline`, 'utf8')] : [])),
      ...readdirSync(join(s.stack.stateRoot, 'services'))
        .filter((f) => f.endsWith('.log'))
        .map((f) => readFileSync(join(s.stack.stateRoot, 'services', f), 'utf8')),
    ];
    expect(texts.length).toBeGreaterThan(8);
    for (const t of texts) for (const pw of passwords) expect(t).not.toContain(pw);
  });

  it("the image-service's Redis login cannot write a task key; the task-service's can", async () => {
    const img = new Redis(serviceEnv('image-service').redis, { lazyConnect: true });
    const task = new Redis(serviceEnv('task-service').redis, { lazyConnect: true });
    try {
      await img.connect();
      await task.connect();
      const key = keys.task('default', 'acl-probe');
      await expect(img.hset(key, 'status', 'stopped')).rejects.toThrow(/NOPERM/);
      await expect(img.del(keys.containers('default'))).rejects.toThrow(/NOPERM/);
      await expect(img.flushall()).rejects.toThrow(/NOPERM/);
      expect(await img.scard(keys.contents(s.stack.nodeId))).toBeGreaterThan(0);
      expect(await task.exists(key)).toBe(0);
    } finally {
      img.disconnect();
      task.disconnect();
    }
  });
});
