import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, describe, expect, it } from 'vitest';
import { Supervised } from './child.js';
import { exited } from './proc.js';

const dir = mkdtempSync(join(tmpdir(), 'berth-child-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function until(what: string, cond: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

function spec(name: string, script: string) {
  return {
    name,
    kind: 'service' as const,
    replica: 1,
    command: process.execPath,
    args: ['-e', script],
    env: process.env,
    logFile: join(dir, `${name}.log`),
    marker: process.execPath,
  };
}

describe('Supervised', () => {
  it('restarts a process that keeps dying, doubling the delay each time up to the cap', async () => {
    const starts: number[] = [];
    let child: Supervised | undefined;
    child = new Supervised(
      spec('crasher', 'process.exit(3)'),
      () => {
        const st = child?.state();
        if (st?.status === 'running') starts.push(Date.now());
      },
      { initialMs: 40, maxMs: 160, resetAfterMs: 60_000 },
    );
    child.start();
    await until('five starts', () => starts.length >= 5);
    const before = child.state();
    await child.stop(1000);
    const gaps = starts.slice(1).map((t, i) => t - (starts[i] as number));
    // Timers never fire early: each gap is at least its backoff (40, 80, 160, 160).
    expect(gaps[0]).toBeGreaterThanOrEqual(40);
    expect(gaps[1]).toBeGreaterThanOrEqual(80);
    expect(gaps[2]).toBeGreaterThanOrEqual(160);
    expect(gaps[3]).toBeGreaterThanOrEqual(160);
    expect(before.restarts).toBeGreaterThanOrEqual(4);
    expect(before.lastExit).toBe('exit code 3');
    expect(readFileSync(join(dir, 'crasher.log'), 'utf8')).toContain('exit code 3; restarting in 40 ms');
  });

  it('stops with SIGTERM, and with SIGKILL after the grace when SIGTERM is ignored', async () => {
    const polite = new Supervised(spec('polite', 'setInterval(() => {}, 1000)'), () => undefined);
    polite.start();
    expect(await polite.stop(5000)).toBe('stopped');
    expect(polite.state().lastExit).toBe('killed by SIGTERM');

    const stubborn = new Supervised(
      spec('stubborn', "process.on('SIGTERM', () => {}); console.log('ready'); setInterval(() => {}, 1000)"),
      () => undefined,
    );
    stubborn.start();
    await until('the handler to be installed', () =>
      readFileSync(join(dir, 'stubborn.log'), 'utf8').includes('ready'),
    );
    expect(await stubborn.stop(200)).toBe('killed');
    expect(stubborn.state().lastExit).toBe('killed by SIGKILL');
    expect(stubborn.state().status).toBe('stopped');
  });

  it("signals only the process, never its group: what it started (a shim's containers) lives on", async () => {
    const pidFile = join(dir, 'grandchild.pid');
    const script = `
      const { spawn } = require('node:child_process');
      const g = spawn('sleep', ['60'], { stdio: 'ignore' });
      require('node:fs').writeFileSync(${JSON.stringify(pidFile)}, String(g.pid));
      process.on('SIGTERM', () => process.exit(0));
      setInterval(() => {}, 1000);`;
    const shim = new Supervised(spec('shim-like', script), () => undefined);
    shim.start();
    await until('the grandchild pid', () => existsSync(pidFile) && readFileSync(pidFile, 'utf8').length > 0);
    const grandchild = Number(readFileSync(pidFile, 'utf8'));
    try {
      expect(await shim.stop(5000)).toBe('stopped');
      // Same process group as the stopped process, yet untouched.
      expect(exited(grandchild)).toBe(false);
    } finally {
      process.kill(grandchild, 'SIGKILL');
    }
  });

  it('does not restart what it was asked to stop, and reports a spawn failure as an exit', async () => {
    const c = new Supervised(
      { ...spec('missing', ''), command: join(dir, 'no-such-binary') },
      () => undefined,
      { initialMs: 10_000, maxMs: 10_000, resetAfterMs: 60_000 },
    );
    c.start();
    await until('the spawn failure', () => c.state().status === 'backoff');
    expect(c.state().lastExit).toMatch(/^spawn failed: .*ENOENT/);
    expect(await c.stop(100)).toBe('not-running');
    expect(c.state().status).toBe('stopped');
  });
});

describe('Supervised.adopt', () => {
  it('takes over a process a dead supervisor started from the same spec, and restarts it once it is gone', async () => {
    const s = spec('adoptee', 'setInterval(() => {}, 1000)');
    // The process as the dead supervisor left it: running, recorded in its state file.
    const first = new Supervised(s, () => undefined);
    const proc = first.start();
    const left = first.state();
    let changes = 0;
    const next = new Supervised(s, () => changes++, { initialMs: 10, maxMs: 10, resetAfterMs: 60_000 });
    expect(next.adopt(left)).toBe(true);
    expect(next.state()).toMatchObject({ pid: proc.pid, status: 'running', specHash: left.specHash });
    expect(readFileSync(join(dir, 'adoptee.log'), 'utf8')).toContain(`adopted adoptee (pid ${proc.pid})`);
    proc.kill('SIGKILL');
    await until('a new process in its place', () => {
      const st = next.state();
      return st.status === 'running' && st.pid !== null && st.pid !== proc.pid;
    });
    expect(next.state()).toMatchObject({ restarts: 1, lastExit: 'exited while adopted (status unknown)' });
    const pid = next.state().pid as number;
    expect(await next.stop(2000)).toBe('stopped');
    expect(exited(pid)).toBe(true);
    expect(changes).toBeGreaterThan(0);
    await first.stop(100);
  });

  it('refuses a process started from another spec, or no longer running its program', async () => {
    const s = spec('other', 'setInterval(() => {}, 1000)');
    const first = new Supervised(s, () => undefined);
    first.start();
    const left = first.state();
    const changed = new Supervised({ ...s, args: [...s.args, '--changed'] }, () => undefined);
    expect(changed.adopt(left)).toBe(false);
    expect(changed.state().pid).toBeNull();
    // The same spec (the marker is not part of it), but the pid does not run that program.
    const wrongMarker = new Supervised({ ...s, marker: 'no-such-program' }, () => undefined);
    expect(wrongMarker.state().specHash).toBe(left.specHash);
    expect(wrongMarker.adopt(left)).toBe(false);
    await first.stop(2000);
    expect(new Supervised(s, () => undefined).adopt(left)).toBe(false);
  });

  it('stops an adopted process by pid, with SIGKILL after the grace when SIGTERM is ignored', async () => {
    const s = spec(
      'stubborn-adoptee',
      "process.on('SIGTERM', () => {}); console.log('handler-set'); setInterval(() => {}, 1000)",
    );
    const first = new Supervised(s, () => undefined);
    const proc = first.start();
    const left = first.state();
    const next = new Supervised(s, () => undefined);
    await until('the SIGTERM handler to be set', () =>
      readFileSync(join(dir, 'stubborn-adoptee.log'), 'utf8').includes('handler-set'),
    );
    expect(next.adopt(left)).toBe(true);
    expect(await next.stop(200)).toBe('killed');
    expect(exited(proc.pid as number)).toBe(true);
    expect(next.state()).toMatchObject({ pid: null, status: 'stopped' });
  });
});
