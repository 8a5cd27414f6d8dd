import { BerthError, Code, type ContainerInfo, type KillRequest } from '@berth/api';
import { describe, expect, it } from 'vitest';
import type { TaskPort } from './ports.js';
import { stopTask } from './stop.js';

// stopTask (StopContainer, and StopPodSandbox per container) over a task-service held in memory
// whose kill answers as the test says: what a refusal "not running" means to the stop, and what a
// kill that failed does. The codes are the shim's for runc's answers (runtime/runc.ts in the shim).

/** A task-service whose container `c1` runs until a kill the test lets through. */
function tasks(kill: (req: KillRequest) => void) {
  const calls: string[] = [];
  const port = {
    getContainer: async () => ({ task: { status: 'running' } }) as unknown as ContainerInfo,
    kill: async (req: KillRequest) => {
      calls.push(`kill ${req.signal}${req.all ? ' all' : ''}`);
      kill(req);
    },
    wait: async () => {
      calls.push('wait');
      return { exitCode: 137, exitedAt: new Date().toISOString() };
    },
  } as unknown as TaskPort;
  return { port, calls };
}

describe('stopTask', () => {
  it('takes a kill refused as "not running" (FAILED_PRECONDITION) as stopping: the exit is waited for', async () => {
    const { port, calls } = tasks(() => {
      throw new BerthError(Code.FAILED_PRECONDITION, 'container "c1" is not running');
    });
    await stopTask(port, 'c1', { timeoutMs: 10_000, signal: 'SIGTERM' });
    expect(calls).toEqual(['kill SIGTERM', 'wait']);
  });

  it('fails at once with a kill that failed (INTERNAL), the stop signal or SIGKILL: nothing taken as stopped', async () => {
    const broken = `task "c1": runc kill failed: lstat /sys/fs/cgroup/devices/k8s/c1: no such file or directory`;
    const fail = () => {
      throw new BerthError(Code.INTERNAL, broken);
    };
    for (const opts of [
      { timeoutMs: 10_000, signal: 'SIGTERM' },
      // StopPodSandbox's form: SIGKILL at once, to every process of the container.
      { timeoutMs: 0, signal: 'SIGKILL' },
    ]) {
      const { port, calls } = tasks(fail);
      const err = await stopTask(port, 'c1', opts).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(BerthError);
      expect([(err as BerthError).code, (err as BerthError).message]).toEqual([Code.INTERNAL, broken]);
      expect(calls).toEqual([opts.timeoutMs ? 'kill SIGTERM' : 'kill SIGKILL all']);
    }
  });
});
