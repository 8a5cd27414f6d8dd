import { existsSync, readdirSync } from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { TestCniNetwork } from '@berth/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { natsShimNetworkPort } from './runtime/nats-ports.js';
import { installGateNetwork } from './testdata/gate-cni.js';
import {
  berthContainers,
  grpcError,
  type Json,
  podConfig,
  rpc,
  runPod,
  startPodStack,
  until,
} from './testdata/pod-fixtures.js';
import { type RuntimeStack, runcIds } from './testdata/runtime-stack.js';

// RunPodSandbox makes the pod's network namespace first, then runs CNI ADD while the pause
// container and its task are made in that namespace. Here the chain is the stack's bridge network
// followed by a "gate" plugin that, while a hold file exists, blocks in ADD (after the bridge leased
// an address); once the hold is gone it fails ADD when a "fail" file exists, else passes the
// bridge's result on. So the test sees the pause container made while ADD is under way, then a
// failing ADD, and checks that the pod is undone whole.

let s: RuntimeStack;
let hold: string;
let fail: string;
let marker: string;

/** The gate: blocks in ADD while the hold file exists, then fails if the fail file exists. */
function gateNetwork(root: string, cni: TestCniNetwork): Promise<Record<string, unknown>> {
  hold = join(root, 'gate-hold');
  fail = join(root, 'gate-fail');
  marker = join(root, 'gate-started');
  return installGateNetwork(
    root,
    cni,
    `  fs.writeFileSync(${JSON.stringify(marker)}, String(process.pid));
  const go = () => {
    if (fs.existsSync(${JSON.stringify(hold)})) return setTimeout(go, 20);
    if (fs.existsSync(${JSON.stringify(fail)})) {
      process.stdout.write(JSON.stringify({ cniVersion: conf.cniVersion, code: 999, msg: 'gate refused the pod' }));
      process.exit(1);
    }
    process.stdout.write(JSON.stringify({ ...conf.prevResult, cniVersion: conf.cniVersion }));
  };
  go();`,
  );
}

beforeAll(async () => {
  ({ s } = await startPodStack(gateNetwork));
}, 180_000);

afterAll(async () => {
  await rm(hold, { force: true });
  await s?.stop();
}, 60_000);

/** The addresses host-local has leased on the stack's network. */
const leases = () =>
  existsSync(s.cni.leaseDir) ? readdirSync(s.cni.leaseDir).filter((f) => /^\d+\.\d+\.\d+\.\d+$/.test(f)) : [];
const netnsFiles = () => {
  const dir = join(s.runRoot, 'netns');
  return existsSync(dir) ? readdirSync(dir) : [];
};
const listed = async (name: string) =>
  (await rpc<{ items: Json[] }>('ListPodSandbox', {})).items.filter(
    (p) => (p.metadata as Json).name === name,
  );

describe('RunPodSandbox with CNI ADD beside the pause container', () => {
  it('makes the pause container while ADD runs, and lists the pod only once it is ready', async () => {
    await writeFile(hold, '');
    const run = rpc<{ pod_sandbox_id: string }>('RunPodSandbox', { config: podConfig('both') });
    run.catch(() => undefined);
    await until('the gate plugin to block in ADD', () => existsSync(marker));
    // ADD is held: the pause container is made meanwhile, in the namespace made before it.
    await until('the pause container to be created by runc', () => runcIds(s.stateRoot).length === 1);
    expect(netnsFiles()).toHaveLength(1);
    expect(await listed('both')).toEqual([]);
    await rm(hold);
    const pod = (await run).pod_sandbox_id;
    const st = await rpc<{ status: { state: string; network: { ip: string } } }>('PodSandboxStatus', {
      pod_sandbox_id: pod,
    });
    expect(st.status.state).toBe('SANDBOX_READY');
    expect(leases()).toEqual([st.status.network.ip]);
    expect((await listed('both')).map((p) => p.id)).toEqual([pod]);
    await rpc('StopPodSandbox', { pod_sandbox_id: pod });
    expect(leases()).toEqual([]);
    await rpc('RemovePodSandbox', { pod_sandbox_id: pod });
    await rm(marker);
  });

  it('undoes the pause container, its task, lease and namespace when ADD fails', async () => {
    await writeFile(hold, '');
    await writeFile(fail, '');
    const run = rpc('RunPodSandbox', { config: podConfig('refused') });
    run.catch(() => undefined);
    await until('the gate plugin to block in ADD', () => existsSync(marker));
    await until('the pause container to be created by runc', () => runcIds(s.stateRoot).length === 1);
    expect(leases()).toHaveLength(1);
    await rm(hold);
    const err = await grpcError(run);
    expect(err.details).toContain('gate refused the pod');
    expect(await berthContainers()).toEqual([]);
    expect(runcIds(s.stateRoot)).toEqual([]);
    expect(leases()).toEqual([]);
    expect(netnsFiles()).toEqual([]);
    expect((await natsShimNetworkPort(s.nc, s.node).list()).pods).toEqual([]);
    expect(await listed('refused')).toEqual([]);
    await rm(fail);
    await rm(marker);
  });

  it('then runs the next pod as usual', async () => {
    const pod = await runPod('next');
    expect((await listed('next')).map((p) => p.id)).toEqual([pod]);
    await rpc('StopPodSandbox', { pod_sandbox_id: pod });
    await rpc('RemovePodSandbox', { pod_sandbox_id: pod });
    expect(await berthContainers()).toEqual([]);
    expect(leases()).toEqual([]);
  });
});
