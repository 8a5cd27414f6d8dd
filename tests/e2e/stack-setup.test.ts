import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdirSync, symlinkSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { startNats, startRedis, type TestServer } from '@berth/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BERTH_BIN, isolatedEnv, removeIsolatedEnv, runBerth, which } from '../harness/berth.js';
import { freeLowPort } from '../harness/ports.js';
import { alive, makeStack, readStackState, startStack, waitFor } from '../harness/stack.js';

describe('berth up with NATS and Redis URLs configured', () => {
  let nats: TestServer;
  let redis: TestServer;

  beforeAll(async () => {
    [nats, redis] = await Promise.all([startNats(), startRedis()]);
  });
  afterAll(async () => {
    await Promise.all([nats?.stop(), redis?.stop()]);
  });

  it('starts no embedded server, runs every service on the given servers, and leaves them running on down', async () => {
    const stack = await startStack({ natsUrl: nats.url, redisUrl: redis.url });
    try {
      const st = stack.state()!;
      expect(st.embedded).toBe(false);
      expect(st.natsUrl).toBe(nats.url);
      expect(st.redisUrl).toBe(redis.url);
      expect(st.children.filter((c) => c.kind === 'embedded')).toEqual([]);
      expect(existsSync(join(stack.stateRoot, 'embedded'))).toBe(false);
      const { code, json } = await stack.status();
      expect(code).toBe(0);
      expect(json.services.every((s) => s.found === 1)).toBe(true);
      // A Redis that stops answering makes every replica unhealthy, and status says so.
      process.kill(redis.proc.pid as number, 'SIGSTOP');
      try {
        const sick = await stack.status();
        expect(sick.code).toBe(1);
        expect(sick.json.unhealthy.length).toBe(5);
        expect(sick.json.unhealthy[0]).toMatch(/is unhealthy: redis: /);
        const text = await stack.berth('status');
        expect(text.stdout).toMatch(/unhealthy \(redis: /);
      } finally {
        process.kill(redis.proc.pid as number, 'SIGCONT');
      }
      await stack.waitForStatus((s) => s.ok);
      const down = await stack.berth('down');
      expect(down.code).toBe(0);
      expect(down.stdout).not.toContain('nats-server');
      expect(alive(nats.proc.pid as number)).toBe(true);
      expect(alive(redis.proc.pid as number)).toBe(true);
    } finally {
      await stack.stop();
    }
  });
});

describe('berth up prerequisites', () => {
  it('names a missing runc with one line saying how to install it, and starts nothing', async () => {
    const iso = await isolatedEnv();
    try {
      // A PATH with everything berth needs except runc.
      const bin = join(iso.root, 'bin');
      mkdirSync(bin);
      for (const tool of ['nats-server', 'redis-server', 'conmon']) {
        const real = which(tool);
        if (real) symlinkSync(real, join(bin, tool));
      }
      const r = await runBerth(['up'], {
        env: {
          ...iso.env,
          PATH: bin,
          BERTH_EMBEDDED_NATS_PORT: String(await freeLowPort()),
          BERTH_EMBEDDED_REDIS_PORT: String(await freeLowPort()),
        },
      });
      expect(r.code).toBe(1);
      expect(r.stderr.trim().split('\n')).toEqual(['berth up: runc not found: apt-get install runc']);
      expect(readStackState(iso.runRoot)).toBeUndefined();
    } finally {
      await removeIsolatedEnv(iso);
    }
  });

  it('says which embedded port is taken instead of talking to a stranger', async () => {
    const squatter = createServer();
    squatter.listen(0, '127.0.0.1');
    await once(squatter, 'listening');
    const port = (squatter.address() as { port: number }).port;
    const iso = await isolatedEnv({
      env: { BERTH_EMBEDDED_NATS_PORT: String(port), BERTH_EMBEDDED_REDIS_PORT: String(await freeLowPort()) },
    });
    try {
      const r = await runBerth(['up'], { env: iso.env });
      expect(r.code).toBe(1);
      expect(r.stderr).toContain(`port 127.0.0.1:${port} for the embedded nats-server is in use`);
      expect(r.stderr).toContain('BERTH_EMBEDDED_NATS_PORT');
      expect(readStackState(iso.runRoot)).toBeUndefined();
      expect(existsSync(join(iso.runRoot, 'supervisor.sock'))).toBe(false);
    } finally {
      squatter.close();
      await removeIsolatedEnv(iso);
    }
  });
});

describe('berth up with a NATS URL nobody answers', () => {
  it('gives up after --timeout with a line naming the URL, and berth down still cleans up', async () => {
    // Port 1: nothing listens there, and no other test file's bind(0) can take it meanwhile.
    const deadPort = 1;
    const iso = await isolatedEnv({
      env: {
        BERTH_NATS_URL: `nats://127.0.0.1:${deadPort}`,
        BERTH_EMBEDDED_REDIS_PORT: String(await freeLowPort()),
      },
    });
    const stack = makeStack(iso, { code: 0, stdout: '', stderr: '' });
    try {
      const r = await runBerth(['up', '--timeout', '3'], { env: iso.env });
      expect(r.code).toBe(1);
      expect(r.stderr).toContain(`cannot reach NATS at nats://127.0.0.1:${deadPort} within 3000 ms`);
      const state = stack.state()!;
      const down = await stack.berth('down');
      expect(down.code).toBe(0);
      for (const c of state.children) if (c.pid !== null) expect(alive(c.pid), c.name).toBe(false);
    } finally {
      await stack.stop();
    }
  });
});

describe('two berth up at once', () => {
  it('start one stack; both succeed', async () => {
    const iso = await isolatedEnv({
      env: {
        BERTH_EMBEDDED_NATS_PORT: String(await freeLowPort()),
        BERTH_EMBEDDED_REDIS_PORT: String(await freeLowPort()),
      },
    });
    const stack = makeStack(iso, { code: 0, stdout: '', stderr: '' });
    try {
      const [a, b] = await Promise.all([
        runBerth(['up'], { env: iso.env }),
        runBerth(['up'], { env: iso.env }),
      ]);
      expect([a.code, b.code], a.stderr + b.stderr).toEqual([0, 0]);
      expect([a.stdout, b.stdout].filter((o) => o.includes('already up'))).toHaveLength(1);
      const json = await stack.waitForStatus((s) => s.ok);
      expect(json.services.every((s) => s.found === 1)).toBe(true);
    } finally {
      await stack.stop();
    }
  });
});

describe('berth up --foreground', () => {
  it('stays attached until Ctrl-C, then stops the whole stack', async () => {
    const iso = await isolatedEnv({
      env: {
        BERTH_EMBEDDED_NATS_PORT: String(await freeLowPort()),
        BERTH_EMBEDDED_REDIS_PORT: String(await freeLowPort()),
      },
    });
    let proc: ChildProcess | undefined;
    try {
      proc = spawn(process.execPath, [BERTH_BIN, 'up', '--foreground'], {
        env: iso.env,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      proc.stdout?.setEncoding('utf8').on('data', (d: string) => {
        out += d;
      });
      proc.stderr?.setEncoding('utf8').on('data', (d: string) => {
        out += d;
      });
      await waitFor('the foreground stack to be up', () => out.includes('running in the foreground'), 60_000);
      const st = readStackState(iso.runRoot)!;
      expect(st.pid).toBe(proc.pid);
      const status = await runBerth(['status', '--json'], { env: iso.env });
      expect(status.code).toBe(0);
      const pids = st.children.map((c) => c.pid as number);
      const exited = once(proc, 'exit');
      proc.kill('SIGINT');
      const [code] = await exited;
      expect(code).toBe(0);
      for (const pid of pids) expect(alive(pid), `pid ${pid}`).toBe(false);
      expect(readStackState(iso.runRoot)).toBeUndefined();
    } finally {
      if (proc && proc.exitCode === null) {
        await runBerth(['down'], { env: iso.env });
      }
      await removeIsolatedEnv(iso);
    }
  });
});
