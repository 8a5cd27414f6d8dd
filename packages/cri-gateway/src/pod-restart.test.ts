import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  berthContainers,
  createCtr,
  ctrStatus,
  exec,
  type Json,
  rpc,
  runPod,
  startPodStack,
  until,
} from './testdata/pod-fixtures.js';
import type { RuntimeStack } from './testdata/runtime-stack.js';

// Pods survive their runtime: a SIGKILLed shim or task-service and a restarted gateway keep every
// pod, container, status and log line (the container logs a numbered line every 0.1 s: none may
// be missing after a restart, and the log goes on growing); the pod is then stopped and removed as
// usual. The gateway's own SIGKILL while pods run is the chaos suite's (tests/chaos: the driver
// kills and pauses the gateway's process, then every pod invariant is checked).

let s: RuntimeStack;
let logDir: string;

beforeAll(async () => {
  ({ s, logDir } = await startPodStack());
}, 180_000);

afterAll(async () => {
  await s?.stop();
}, 60_000);

describe('CRI pods across restarts of the services', () => {
  let pod: string;
  let ctr: string;
  const logFile = () => join(logDir, 'survivor', 'app', '0.log');

  /** The pod and its container as they were: ready, running, answering, their log whole. */
  async function stillThere(round: string): Promise<void> {
    const pst = await rpc<{ status: Json }>('PodSandboxStatus', { pod_sandbox_id: pod });
    expect(pst.status.state, round).toBe('SANDBOX_READY');
    expect((pst.status.network as { ip: string }).ip, round).toMatch(/^\d+\.\d+\.\d+\.\d+$/);
    expect((await ctrStatus(ctr)).state, round).toBe('CONTAINER_RUNNING');
    const r = await exec(ctr, ['sh', '-c', `echo ${round}`]);
    expect(r.exit_code, round).toBe(0);
    expect(Buffer.from(r.stdout).toString(), round).toBe(`${round}\n`);
    // The log is whole and still written: every tick from the first, none lost to a restart.
    const before = await ticksWhole(round);
    lastTick = before;
    await until(`${round}: the log to grow`, async () => (await ticksWhole(round)) > before);
  }

  let lastTick = 0;
  /** The highest tick in the log, after checking the log holds every tick up to it, in order. */
  async function ticksWhole(round: string): Promise<number> {
    const lines = readFileSync(logFile(), 'utf8').split('\n').filter(Boolean);
    expect(lines[0], round).toMatch(/ stdout F before$/);
    const ticks = lines.slice(1).map((l) => Number(/ stdout F tick-(\d+)$/.exec(l)?.[1] ?? Number.NaN));
    // The last line may be half-written while read: only whole lines count.
    expect(ticks.slice(0, -1), round).toEqual(ticks.slice(0, -1).map((_, i) => i + 1));
    const whole = ticks.filter((n) => !Number.isNaN(n));
    expect(whole.length, round).toBeGreaterThanOrEqual(lastTick);
    return whole.length;
  }

  it('runs a pod and a container', async () => {
    pod = await runPod('survivor');
    ctr = await createCtr(pod, 'survivor', 'app', {
      command: ['sh', '-c', 'echo before; i=0; while true; do i=$((i+1)); echo tick-$i; sleep 0.1; done'],
      log_path: 'app/0.log',
    });
    await rpc('StartContainer', { container_id: ctr });
    await until('the first log line', () => {
      try {
        return readFileSync(logFile(), 'utf8').includes('before');
      } catch {
        return false;
      }
    });
    await stillThere('started');
  });

  it('keeps them when the shim is SIGKILLed and comes back', async () => {
    await s.killAndRestart('shim');
    await stillThere('after-shim');
  });

  it('keeps them when the task-service is SIGKILLed and comes back', async () => {
    await s.killAndRestart('task-service');
    await stillThere('after-task-service');
  });

  it('keeps them when the gateway restarts', async () => {
    await s.restartGateway();
    await stillThere('after-gateway');
  });

  it('then stops and removes them as usual, leaving nothing', async () => {
    await rpc('StopContainer', { container_id: ctr, timeout: 2 });
    const st = await ctrStatus(ctr);
    expect(st.state).toBe('CONTAINER_EXITED');
    expect([137, 143]).toContain(Number(st.exit_code));
    await rpc('StopPodSandbox', { pod_sandbox_id: pod });
    await rpc('RemovePodSandbox', { pod_sandbox_id: pod });
    expect(await berthContainers()).toEqual([]);
  });
});
