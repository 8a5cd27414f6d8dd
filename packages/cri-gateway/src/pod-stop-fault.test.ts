import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { Service, serviceDefs } from '@berth/api';
import { eventSubject } from '@berth/api/subjects';
import { call } from '@berth/kit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { grpcError, type Json, rpc, runPod, startPodStack } from './testdata/pod-fixtures.js';
import { type RuntimeStack, runcIds } from './testdata/runtime-stack.js';

// StopPodSandbox when the node's shim stops answering between the kill of the pause process and
// the pod's network teardown (a paused shim, or one that lost NATS: what the chaos suite met). The
// stop fails, and the pod is left stopped in part as containerd leaves it: not ready, its pause
// not running, still listed; the kubelet's retry of the stop then finishes it.

let s: RuntimeStack;

beforeAll(async () => {
  ({ s } = await startPodStack());
}, 180_000);

afterAll(async () => {
  await s?.stop();
}, 60_000);

const UNAVAILABLE = 14;

describe('StopPodSandbox whose network teardown fails', () => {
  it('leaves the pod not ready with nothing running, and the retry finishes the stop', async () => {
    const pod = await runPod('stop-fault');
    const shimPid = (await call(s.nc, serviceDefs[Service.shim], 'info', {}, { node: s.node })).pid;
    // The pause process's exit is announced before the gateway goes on to the network teardown:
    // the shim is stopped on it, so the teardown meets a shim that does not answer.
    let paused = false;
    const sub = s.nc.subscribe(eventSubject('tasks.exit'), {
      callback: (_err, msg) => {
        const e = (msg.json() as { event?: { id?: string } }).event;
        if (e?.id !== pod || paused) return;
        paused = true;
        process.kill(shimPid, 'SIGSTOP');
      },
    });
    try {
      const err = await grpcError(rpc('StopPodSandbox', { pod_sandbox_id: pod }));
      expect(paused).toBe(true);
      expect(err.code).toBe(UNAVAILABLE);
      expect(err.details).toMatch(/network-teardown/);
    } finally {
      sub.unsubscribe();
      if (paused) process.kill(shimPid, 'SIGCONT');
    }
    const st = await rpc<{ status: Json }>('PodSandboxStatus', { pod_sandbox_id: pod });
    expect(st.status.state).toBe('SANDBOX_NOTREADY');
    // Whole as the chaos suite holds it: the pause container no longer runs (runc keeps it stopped
    // until the removal deletes it).
    if (runcIds(s.stateRoot).includes(pod)) {
      const root = join(s.stateRoot, 'runc', 'k8s.io');
      const state = JSON.parse(execFileSync('runc', ['--root', root, 'state', pod]).toString()) as Json;
      expect(state.status).toBe('stopped');
    }
    await rpc('StopPodSandbox', { pod_sandbox_id: pod });
    await rpc('RemovePodSandbox', { pod_sandbox_id: pod });
    const left = await rpc<{ items: { id: string }[] }>('ListPodSandbox', {});
    expect(left.items.map((p) => p.id)).not.toContain(pod);
    expect(runcIds(s.stateRoot)).not.toContain(pod);
  }, 60_000);
});
