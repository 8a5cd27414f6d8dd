import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
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
// pod, container, status (address and times unchanged) and log line (the container logs a
// numbered line every 0.1 s: none may be missing after a restart, and the log goes on growing); a
// container that exits while the shim or the task-service is down is reported exited, with its
// code and time, once it is back; the pod is then stopped and removed as usual. The gateway's own
// SIGKILL while pods run is the chaos suite's (tests/chaos: the driver kills and pauses the
// gateway's process, then every pod invariant is checked).

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

  /** What a restart must not change: the pod's address and creation, the container's times. */
  const recordOf = async () => {
    const pst = (await rpc<{ status: Json }>('PodSandboxStatus', { pod_sandbox_id: pod })).status;
    const cst = await ctrStatus(ctr);
    return {
      ip: (pst.network as { ip: string }).ip,
      podCreatedAt: pst.created_at,
      createdAt: cst.created_at,
      startedAt: cst.started_at,
    };
  };
  let record: Awaited<ReturnType<typeof recordOf>>;

  /** The pod and its container as they were: ready, running, answering, their log whole. */
  async function stillThere(round: string): Promise<void> {
    const pst = await rpc<{ status: Json }>('PodSandboxStatus', { pod_sandbox_id: pod });
    expect(pst.status.state, round).toBe('SANDBOX_READY');
    expect((await ctrStatus(ctr)).state, round).toBe('CONTAINER_RUNNING');
    expect(await recordOf(), round).toEqual(record);
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

  const nowNs = () => BigInt(Date.now()) * 1_000_000n;
  /** True while the process is there and not yet reaped (a zombie counts as gone). */
  const alive = (pid: number) => {
    try {
      return !/^\d+ \(.*\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
    } catch {
      return false;
    }
  };

  /**
   * A running container of the pod that exits 3 once its gate file exists; `exit` opens the gate
   * and waits until the process is gone, answering when the gate opened and when it saw it gone.
   */
  async function quitter(name: string) {
    const gate = join(logDir, `${name}-gate`);
    mkdirSync(gate);
    const id = await createCtr(pod, 'survivor', name, {
      command: ['sh', '-c', 'until [ -e /gate/go ]; do sleep 0.05; done; exit 3'],
      log_path: `${name}/0.log`,
      mounts: [{ container_path: '/gate', host_path: gate }],
    });
    await rpc('StartContainer', { container_id: id });
    const verbose = await rpc<{ info: { info: string } }>('ContainerStatus', {
      container_id: id,
      verbose: true,
    });
    const pid = (JSON.parse(verbose.info.info) as { task: { pid: number } }).task.pid;
    expect(alive(pid)).toBe(true);
    const times = { opened: 0n, gone: 0n };
    return {
      id,
      times,
      async exit() {
        times.opened = nowNs();
        writeFileSync(join(gate, 'go'), '');
        await until(`${name} to exit`, () => !alive(pid));
        times.gone = nowNs();
      },
    };
  }

  /** The quitter reported as it exited while a service was down: its code, reason and time. */
  async function exitedWhileDown(q: Awaited<ReturnType<typeof quitter>>): Promise<void> {
    const st = await until('the exit to be reported', async () => {
      const s = await ctrStatus(q.id);
      return s.state === 'CONTAINER_EXITED' ? s : undefined;
    });
    expect(st).toMatchObject({ exit_code: 3, reason: 'Error' });
    // When it exited, not when the service came back to see it. The time is the exit file's (the
    // kernel's coarse clock, a jiffy behind, written by conmon once it reaped the process, after
    // the test saw it gone): 20 ms before the gate opened to 100 ms after the process was gone,
    // where the service, started only then, takes longer than that to start and look.
    const finished = BigInt(st.finished_at as string);
    expect(finished).toBeGreaterThanOrEqual(q.times.opened - 20_000_000n);
    expect(finished).toBeLessThanOrEqual(q.times.gone + 100_000_000n);
    await rpc('RemoveContainer', { container_id: q.id });
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
    record = await recordOf();
    expect(record.ip).toMatch(/^\d+\.\d+\.\d+\.\d+$/);
    expect(BigInt(record.startedAt as string)).toBeGreaterThan(0n);
    await stillThere('started');
  });

  it('keeps them when the shim is SIGKILLed and comes back, and sees what exited meanwhile', async () => {
    const q = await quitter('gone-shim');
    await s.killAndRestart('shim', q.exit);
    await stillThere('after-shim');
    await exitedWhileDown(q);
  });

  it('keeps them when the task-service is SIGKILLed and comes back, and sees what exited meanwhile', async () => {
    const q = await quitter('gone-task');
    await s.killAndRestart('task-service', q.exit);
    await stillThere('after-task-service');
    await exitedWhileDown(q);
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
