import { execFileSync } from 'node:child_process';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { TestCniNetwork } from '@berth/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { installGateNetwork } from './testdata/gate-cni.js';
import { grpcError, type Json, rpc, runPod, startPodStack, until } from './testdata/pod-fixtures.js';
import { type RuntimeStack, runcIds } from './testdata/runtime-stack.js';

// StopPodSandbox whose network teardown fails while the kill of the pod's processes succeeds
// (what the chaos suite met when the shim lost NATS in the teardown). The stop fails, and the
// pod is left stopped in part as containerd leaves it: not ready, its pause not running, still
// listed; the kubelet's retry of the stop then finishes it. The pod's CNI chain ends in a "gate"
// plugin that fails DEL while a file exists.

let s: RuntimeStack;
let fail: string;

function gateNetwork(root: string, cni: TestCniNetwork): Promise<Record<string, unknown>> {
  fail = join(root, 'gate-fail-del');
  return installGateNetwork(
    root,
    cni,
    '  process.stdout.write(JSON.stringify({ ...conf.prevResult, cniVersion: conf.cniVersion }));',
    {
      del: `    if (fs.existsSync(${JSON.stringify(fail)})) {
      process.stdout.write(JSON.stringify({ cniVersion: conf.cniVersion, code: 999, msg: 'gate refused DEL' }));
      process.exit(1);
    }
    process.exit(0);`,
    },
  );
}

beforeAll(async () => {
  ({ s } = await startPodStack(gateNetwork));
}, 180_000);

afterAll(async () => {
  await s?.stop();
}, 60_000);

describe('StopPodSandbox whose network teardown fails', () => {
  it('leaves the pod not ready with nothing running, and the retry finishes the stop', async () => {
    const pod = await runPod('stop-fault');
    await writeFile(fail, '');
    try {
      const err = await grpcError(rpc('StopPodSandbox', { pod_sandbox_id: pod }));
      expect(err.details).toMatch(/gate refused DEL/);
    } finally {
      await rm(fail, { force: true });
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
    // The record goes in the call; the task-service's collection deletes the task after.
    await until('the removed pod task to be deleted', () => !runcIds(s.stateRoot).includes(pod));
  }, 60_000);
});
