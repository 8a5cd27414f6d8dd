import { spawn } from 'node:child_process';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { connectNats } from '@berth/kit';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BERTH_LAUNCHER, runBerth } from '../harness/berth.js';
import { alive, type Stack, startStack, waitFor } from '../harness/stack.js';
import { importBusyboxTo } from './containers-stack.js';

const IMAGE = 'berth.test/busybox:served';
const SERVICES = ['shim', 'snapshot-service', 'image-service', 'task-service', 'cri-gateway'];

describe('berth up with the embedded NATS and Redis', () => {
  let stack: Stack;

  beforeAll(async () => {
    stack = await startStack();
  });
  afterAll(async () => {
    await stack?.stop();
  });

  it('starts all five services and the embedded servers, and says so', async () => {
    expect(stack.upResult.stdout).toContain('berth is up');
    for (const s of SERVICES) expect(stack.upResult.stdout).toContain(s);
    const st = stack.state();
    expect(st?.embedded).toBe(true);
    const embedded = st?.children.filter((c) => c.kind === 'embedded').map((c) => c.name);
    expect(embedded?.sort()).toEqual(['nats-server', 'redis-server']);
    for (const c of st?.children ?? []) {
      expect(c.pid, `${c.name} has a pid`).not.toBeNull();
      expect(alive(c.pid as number), `${c.name} pid ${c.pid} is alive`).toBe(true);
    }
  });

  it('berth status shows every service healthy and exits 0', async () => {
    const { code, json } = await stack.status();
    expect(json.missing).toEqual([]);
    expect(code).toBe(0);
    expect(json.ok).toBe(true);
    for (const s of SERVICES) {
      const svc = json.services.find((x) => x.service === s);
      expect(svc?.found, s).toBe(1);
      expect(svc?.instances[0]?.health, s).toBe('healthy');
      expect(svc?.instances[0]?.node, s).toBe(stack.nodeId);
    }
    const text = await stack.berth('status');
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/SERVICE\s+NODE\s+INSTANCE\s+PID/);
  });

  it('serves berth ps, images and run from the supervisor, printing what the CLI prints when run by itself', async () => {
    /** The root spans of `berth images` in the span store, served ones first. */
    const imagesSpans = () => {
      const file = join(stack.stateRoot, 'traces', 'spans.jsonl');
      const spans = (existsSync(file) ? readFileSync(file, 'utf8') : '')
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map(
          (l) => JSON.parse(l) as { name: string; parentSpanId: string; attributes: Record<string, unknown> },
        )
        .filter((s) => s.name === 'berth images' && s.parentSpanId === '');
      const served = spans.filter((s) => s.attributes['berth.cli.served'] === true).length;
      return { served, own: spans.length - served };
    };
    const before = imagesSpans();
    const own = { ...stack.env, BERTH_CLI_LOCAL: '1' };
    const nc = await connectNats({ url: stack.natsUrl, name: 'e2e-stack-served' });
    try {
      await importBusyboxTo(nc, { dir: stack.root, node: stack.nodeId, namespace: 'default', name: IMAGE });
    } finally {
      await nc.close();
    }
    // `run` reads a bare -e NAME from the client's environment, and its files from its directory.
    const envFile = join(stack.root, 'served.env');
    writeFileSync(envFile, 'FROM_FILE=yes\n');
    const script = 'echo "$FROM_CLIENT $FROM_FILE"; echo err >&2; exit 3';
    for (const args of [
      ['images'],
      ['ps', '-a'],
      ['ps', '--bogus'],
      ['-n', 'other', 'images', '-q'],
      ['--help'],
      ['run', '--rm', '-e', 'FROM_CLIENT', '--env-file', 'served.env', IMAGE, 'sh', '-c', script],
    ]) {
      const env = { ...stack.env, FROM_CLIENT: 'client' };
      const served = await runBerth(args, { env, launcher: true, cwd: stack.root });
      expect(served, args.join(' ')).toEqual(
        await runBerth(args, { env: { ...own, FROM_CLIENT: 'client' }, cwd: stack.root }),
      );
    }
    const after = imagesSpans();
    expect(after.served - before.served).toBe(2);
    expect(after.own - before.own).toBe(2);
    expect((await stack.berth('ps', '-aq')).stdout).toBe('');
  });

  /** `berth ARGS` through the client, sent `signal` once it printed "ready": its exit code (or signal) and output. */
  const clientRun = (args: string[], signal: NodeJS.Signals) => {
    const p = spawn(BERTH_LAUNCHER, args, { env: stack.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      if (out === 'ready\n') p.kill(signal);
    });
    return new Promise<{ code: unknown; out: string }>((resolve) =>
      p.on('close', (c, sig) => resolve({ code: c ?? sig, out })),
    );
  };

  it('ends a served berth run whose client was killed, leaving its container running, as the CLI killed would', async () => {
    await clientRun(['run', '--name', 'orphaned', IMAGE, 'sh', '-c', 'echo ready; sleep 60'], 'SIGKILL');
    // The served command stopped following once its client was gone: its root span ended (129).
    const spans = join(stack.stateRoot, 'traces', 'spans.jsonl');
    await waitFor('the served run to end', () =>
      readFileSync(spans, 'utf8')
        .split('\n')
        .some((l) => l.includes('"name":"berth run"') && l.includes('"process.exit.code":129')),
    );
    const ps = await stack.berth('ps');
    expect(ps.stdout).toMatch(/ Up .* orphaned$/m);
    expect((await stack.berth('rm', '-f', 'orphaned')).code).toBe(0);
  });

  it('forwards the signals of a served berth run to its container', async () => {
    const script = 'trap "echo got TERM; exit 5" TERM; echo ready; sleep 30 & wait';
    const { code, out } = await clientRun(['run', '--rm', IMAGE, 'sh', '-c', script], 'SIGTERM');
    expect({ code, out }).toEqual({ code: 5, out: 'ready\ngot TERM\n' });
    const spans = readFileSync(join(stack.stateRoot, 'traces', 'spans.jsonl'), 'utf8');
    expect(spans).toMatch(/"name":"berth run"[^\n]*"berth\.cli\.served":true/);
  });

  it('runs the embedded servers on loopback with JetStream and AOF, data under the state root', async () => {
    const st = stack.state()!;
    // Credentials in the URL: the embedded servers require them (see stack-auth.test.ts).
    expect(st.natsUrl).toMatch(/^nats:\/\/berth:[A-Za-z0-9_-]{43}@127\.0\.0\.1:\d+$/);
    const nc = await connectNats({ url: st.natsUrl, name: 'e2e-stack' });
    try {
      const jsm = await nc.jetstreamManager();
      const info = await jsm.getAccountInfo();
      expect(info.limits).toBeDefined();
    } finally {
      await nc.close();
    }
    expect(existsSync(join(stack.stateRoot, 'embedded', 'nats', 'jetstream'))).toBe(true);
    const redis = new Redis(st.redisUrl, { lazyConnect: true });
    try {
      await redis.connect();
      expect(await redis.config('GET', 'appendonly')).toEqual(['appendonly', 'yes']);
      expect(await redis.config('GET', 'bind')).toEqual(['bind', '127.0.0.1']);
      expect(await redis.config('GET', 'protected-mode')).toEqual(['protected-mode', 'yes']);
      expect(await redis.config('GET', 'unixsocket')).toEqual(['unixsocket', '']);
      expect(await redis.config('GET', 'dir')).toEqual(['dir', join(stack.stateRoot, 'embedded', 'redis')]);
    } finally {
      redis.disconnect();
    }
  });

  it('writes one log file per service and keeps the control socket and state file private', () => {
    for (const s of SERVICES) {
      const log = join(stack.stateRoot, 'services', `${s}.log`);
      expect(existsSync(log), log).toBe(true);
    }
    const sock = statSync(join(stack.runRoot, 'supervisor.sock'));
    expect(sock.isSocket()).toBe(true);
    expect(sock.mode & 0o777).toBe(0o600);
    // URLs in the state file may carry credentials.
    expect(statSync(join(stack.runRoot, 'supervisor.json')).mode & 0o777).toBe(0o600);
  });

  it('berth service logs prints the tail of a service log', async () => {
    const r = await stack.berth('service', 'logs', '--tail', '3', 'image-service');
    expect(r.code).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines.length).toBeLessThanOrEqual(3);
    const all = await stack.berth('service', 'logs', 'image-service');
    expect(all.stdout).toContain('"msg":"image-service ready"');
    const bad = await stack.berth('service', 'logs', 'sshd');
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('unknown service "sshd"');
  });

  it('a second berth up says it is already up and changes nothing', async () => {
    const before = stack.state()!;
    const again = await stack.berth('up');
    expect(again.code).toBe(0);
    expect(again.stdout).toContain('already up');
    const after = stack.state()!;
    expect(after.pid).toBe(before.pid);
    expect(after.children.map((c) => c.pid)).toEqual(before.children.map((c) => c.pid));
  });

  it('restarts a service killed with SIGKILL, and status is healthy again', async () => {
    const victim = stack.state()!.children.find((c) => c.name === 'image-service')!;
    const oldPid = victim.pid as number;
    process.kill(oldPid, 'SIGKILL');
    const st = await stack.waitForStatus((s) => {
      const inst = s.services.find((x) => x.service === 'image-service')?.instances ?? [];
      return s.ok && inst.length === 1 && inst[0]?.pid !== oldPid;
    });
    expect(st.ok).toBe(true);
    const now = stack.state()!.children.find((c) => c.name === 'image-service')!;
    expect(now.restarts).toBe(1);
    expect(now.lastExit).toBe('killed by SIGKILL');
    expect(alive(oldPid)).toBe(false);
  });

  it('restarts the embedded redis-server and nats-server when they die; data and services survive', async () => {
    const st = stack.state()!;
    const redis = new Redis(st.redisUrl, { lazyConnect: true });
    redis.on('error', () => undefined);
    await redis.connect();
    await redis.set('berth-e2e:survives', 'yes');
    redis.disconnect();
    for (const name of ['redis-server', 'nats-server']) {
      const victim = stack.state()!.children.find((c) => c.name === name)!;
      process.kill(victim.pid as number, 'SIGKILL');
      await waitFor(`${name} to be restarted`, () => {
        const now = stack.state()?.children.find((c) => c.name === name);
        return now?.status === 'running' && now.pid !== victim.pid && now.restarts === victim.restarts + 1;
      });
      // Every service reconnects on its own and answers `info` healthy again.
      await stack.waitForStatus((s) => s.ok && s.services.every((x) => x.found === 1));
    }
    const again = new Redis(st.redisUrl, { lazyConnect: true });
    try {
      await again.connect();
      expect(await again.get('berth-e2e:survives')).toBe('yes');
    } finally {
      again.disconnect();
    }
  });

  it('berth down stops everything in order, leaves no process or socket, and is idempotent', async () => {
    const pids = stack.knownPids();
    const down = await stack.berth('down');
    expect(down.code).toBe(0);
    expect(down.stdout).toContain('berth is down');
    const order = down.stdout
      .split('\n')
      .map((l) => /^([a-z-]+)#\d+/.exec(l)?.[1])
      .filter(Boolean);
    // Callers first, the shim after the services, the embedded servers last (image and snapshot
    // stop together, so their relative order is free).
    expect(order.slice(0, 2)).toEqual(['cri-gateway', 'task-service']);
    expect(order.slice(2, 4).sort()).toEqual(['image-service', 'snapshot-service']);
    expect(order[4]).toBe('shim');
    expect(order.slice(5).sort()).toEqual(['nats-server', 'redis-server']);
    for (const pid of pids) expect(alive(pid), `pid ${pid} is gone`).toBe(false);
    expect(existsSync(join(stack.runRoot, 'supervisor.sock'))).toBe(false);
    expect(existsSync(join(stack.runRoot, 'supervisor.json'))).toBe(false);
    const again = await stack.berth('down');
    expect(again.code).toBe(0);
    expect(again.stdout).toContain('berth is not up');
    const status = await stack.berth('status');
    expect(status.code).not.toBe(0);
  });
});

describe('berth up --replicas', () => {
  let stack: Stack;

  beforeAll(async () => {
    // image-service from the command line, task-service from config: both paths at once.
    stack = await startStack({
      replicas: { 'image-service': 2 },
      config: { services: { 'task-service': { replicas: 2 } } },
    });
  });
  afterAll(async () => {
    await stack?.stop();
  });

  it('runs two replicas of each, each with its own log file, all healthy', async () => {
    const { code, json } = await stack.status();
    expect(code).toBe(0);
    for (const s of ['image-service', 'task-service']) {
      const svc = json.services.find((x) => x.service === s)!;
      expect(svc.expected).toBe(2);
      expect(svc.found).toBe(2);
      expect(new Set(svc.instances.map((i) => i.pid)).size).toBe(2);
      expect(svc.instances.every((i) => i.health === 'healthy')).toBe(true);
      for (const n of [1, 2])
        expect(existsSync(join(stack.stateRoot, 'services', `${s}-${n}.log`))).toBe(true);
    }
    expect(json.services.find((x) => x.service === 'shim')?.found).toBe(1);
  });

  it('refuses replicas of a once-per-host service with one clear line', async () => {
    const r = await stack.berth('up', '--replicas', 'shim=2');
    expect(r.code).toBe(2);
    expect(r.stderr.trim()).toBe('berth: --replicas: "shim" runs once per host and cannot have replicas');
  });

  it('status reports a replica that is down as missing and exits non-zero', async () => {
    const st = stack.state()!;
    // Stop the supervisor from restarting by killing the supervisor first, then one replica.
    const replica = st.children.find((c) => c.name === 'image-service' && c.replica === 2)!;
    process.kill(st.pid, 'SIGKILL');
    await waitFor('supervisor to die', () => !alive(st.pid));
    process.kill(replica.pid as number, 'SIGKILL');
    await waitFor('replica to die', () => !alive(replica.pid as number));
    const r = await stack.berth('status');
    expect(r.code).toBe(1);
    expect(r.stdout).toContain(`missing: image-service has 1 of 2 replicas running on node ${stack.nodeId}`);
  });

  it('berth down after the supervisor died stops the processes it left behind', async () => {
    const leftovers = stack.state()!.children.filter((c) => c.pid !== null && alive(c.pid));
    expect(leftovers.length).toBeGreaterThan(0);
    const r = await stack.berth('down');
    expect(r.code).toBe(0);
    expect(r.stderr).toContain('cleaned up after supervisor pid');
    for (const c of leftovers) expect(alive(c.pid as number), `${c.name} pid ${c.pid}`).toBe(false);
    expect(stack.state()).toBeUndefined();
  });
});
