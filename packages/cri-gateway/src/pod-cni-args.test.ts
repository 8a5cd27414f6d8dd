import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { TestCniNetwork } from '@berth/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { installRecordNetwork } from './testdata/gate-cni.js';
import {
  grpcError,
  INVALID_ARGUMENT,
  type Json,
  podConfig,
  rpc,
  runPod,
  startPodStack,
} from './testdata/pod-fixtures.js';
import type { RuntimeStack } from './testdata/runtime-stack.js';

// What the CNI plugins of a pod's chain are told about it, as containerd 1.6's CRI tells them:
// CNI_ARGS with the pod's namespace, name, uid and sandbox id, and the bandwidth (from the pod's
// annotations) and dns (from its DNSConfig) capabilities, on ADD and on DEL. The chain is the
// stack's bridge followed by a "gate" plugin declaring those capabilities that notes each call.

let s: RuntimeStack;
let calls: string;

interface Call {
  command: string;
  args: string | null;
  conf: { runtimeConfig?: Json };
}

async function callsOf(sandboxId: string): Promise<Call[]> {
  const lines = (await readFile(calls, 'utf8').catch(() => '')).split('\n').filter(Boolean);
  return lines.map((l) => JSON.parse(l) as Call).filter((c) => c.args?.includes(sandboxId));
}

beforeAll(async () => {
  ({ s } = await startPodStack((root: string, cni: TestCniNetwork) => {
    calls = join(root, 'cni-calls');
    return installRecordNetwork(root, cni, calls);
  }));
}, 180_000);

afterAll(async () => {
  await s?.stop();
}, 60_000);

describe("a pod's CNI ADD and DEL", () => {
  it('carry CNI_ARGS with its namespace, name, uid and sandbox id, and its bandwidth and dns', async () => {
    const annotations = {
      'kubernetes.io/ingress-bandwidth': '1M',
      'kubernetes.io/egress-bandwidth': '10Mi',
    };
    const pod = await runPod('shaped', {
      metadata: { name: 'shaped', uid: 'uid-shaped-7f3a', namespace: 'team-a', attempt: 0 },
      annotations,
    });
    const args = `IgnoreUnknown=1;K8S_POD_NAMESPACE=team-a;K8S_POD_NAME=shaped;K8S_POD_INFRA_CONTAINER_ID=${pod};K8S_POD_UID=uid-shaped-7f3a`;
    const runtimeConfig = {
      bandwidth: {
        ingressRate: 1_000_000,
        ingressBurst: 4294967295,
        egressRate: 10_485_760,
        egressBurst: 4294967295,
      },
      dns: { servers: ['10.0.0.10'], searches: ['svc.cluster.local'], options: ['ndots:5'] },
    };
    const [add, ...more] = await callsOf(pod);
    expect(more).toEqual([]);
    expect(add?.command).toBe('ADD');
    expect(add?.args).toBe(args);
    expect(add?.conf.runtimeConfig).toEqual(runtimeConfig);
    await rpc('StopPodSandbox', { pod_sandbox_id: pod });
    const del = (await callsOf(pod)).filter((c) => c.command === 'DEL');
    expect(del.length).toBeGreaterThan(0);
    for (const c of del) {
      expect(c.args).toBe(args);
      expect(c.conf.runtimeConfig).toEqual(runtimeConfig);
    }
    await rpc('RemovePodSandbox', { pod_sandbox_id: pod });
  }, 60_000);

  it('without bandwidth annotations carry no bandwidth', async () => {
    const pod = await runPod('plain');
    const [add] = await callsOf(pod);
    expect(add?.args).toContain(';K8S_POD_NAME=plain;');
    expect(add?.conf.runtimeConfig).toEqual({
      dns: { servers: ['10.0.0.10'], searches: ['svc.cluster.local'], options: ['ndots:5'] },
    });
    await rpc('StopPodSandbox', { pod_sandbox_id: pod });
    await rpc('RemovePodSandbox', { pod_sandbox_id: pod });
  }, 60_000);

  it('a bandwidth annotation that is not a sane quantity fails RunPodSandbox before anything runs', async () => {
    const before = (await readFile(calls, 'utf8').catch(() => '')).length;
    const config = podConfig('badbw', { annotations: { 'kubernetes.io/ingress-bandwidth': '10MB' } });
    const err = await grpcError(rpc('RunPodSandbox', { config }));
    expect(err.code).toBe(INVALID_ARGUMENT);
    expect(err.details).toMatch(/kubernetes\.io\/ingress-bandwidth"\] "10MB" is not a quantity/);
    expect((await readFile(calls, 'utf8').catch(() => '')).length).toBe(before);
    expect((await rpc<{ items: Json[] }>('ListPodSandbox', {})).items).toEqual([]);
  }, 60_000);
});
