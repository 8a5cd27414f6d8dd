import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { TestCniNetwork } from '@berth/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { natsShimNetworkPort } from './runtime/nats-ports.js';
import { installGateNetwork } from './testdata/gate-cni.js';
import { type Json, podConfig, rpc, runPod, startPodStack, until } from './testdata/pod-fixtures.js';
import type { RuntimeStack } from './testdata/runtime-stack.js';

// A shim SIGKILLed in the middle of RunPodSandbox, while a CNI plugin of the pod's chain runs:
// the bridge has leased an address and made the veth, a later plugin has not answered yet. The
// restarted shim must release what the half-made pod holds, and the node must go on giving pods
// addresses. The chain is the stack's own bridge network followed by a "gate" plugin that, while a
// hold file exists, blocks in ADD (telling its pid), and otherwise passes the bridge's result on.

let s: RuntimeStack;
let hold: string;
let marker: string;
let gatePid: number | undefined;

/** The gate: blocks in ADD for good (telling its pid) while the hold file exists. */
function gateNetwork(root: string, cni: TestCniNetwork): Promise<Record<string, unknown>> {
  hold = join(root, 'gate-hold');
  marker = join(root, 'gate-started');
  return installGateNetwork(
    root,
    cni,
    `  if (fs.existsSync(${JSON.stringify(hold)})) {
    fs.writeFileSync(${JSON.stringify(marker)}, String(process.pid));
    setInterval(() => {}, 1 << 30);
    return;
  }
  process.stdout.write(JSON.stringify({ ...conf.prevResult, cniVersion: conf.cniVersion }));`,
  );
}

beforeAll(async () => {
  ({ s } = await startPodStack(gateNetwork));
}, 180_000);

afterAll(async () => {
  if (gatePid) {
    try {
      process.kill(gatePid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  await s?.stop();
}, 60_000);

/** The pid the gate plugin wrote once it blocked in ADD, or undefined before it did. */
function gatePidWritten(): number | undefined {
  if (!existsSync(marker)) return undefined;
  const pid = Number(readFileSync(marker, 'utf8'));
  return Number.isInteger(pid) && pid > 1 ? pid : undefined;
}

/** The addresses host-local has leased on the stack's network. */
const leases = () =>
  existsSync(s.cni.leaseDir) ? readdirSync(s.cni.leaseDir).filter((f) => /^\d+\.\d+\.\d+\.\d+$/.test(f)) : [];

describe('a shim SIGKILLed mid-RunPodSandbox', () => {
  it('releases the half-made pod on restart: no lease, no namespace, no recorded pod', async () => {
    await writeFile(hold, '');
    // The gateway's call to the killed shim is lost with it: the RunPodSandbox fails.
    const run = rpc('RunPodSandbox', { config: podConfig('crash') }).then(
      () => 'answered OK',
      (err: Error) => err,
    );
    // The plugin creates the file, then writes its pid: until both, the read is '' (Number('') is
    // 0, and kill(0) would signal this test's own process group).
    await until('the gate plugin to block in ADD', () => gatePidWritten() !== undefined);
    gatePid = gatePidWritten();
    // Mid-chain: the bridge already leased an address for the pod.
    expect(leases()).toHaveLength(1);
    await rm(hold);
    await s.killAndRestart('shim');
    if (gatePid) process.kill(gatePid, 'SIGKILL');
    gatePid = undefined;
    await until('the restarted shim to release the lease', () => leases().length === 0);
    expect((await natsShimNetworkPort(s.nc, s.node).list()).pods).toEqual([]);
    const netns = join(s.runRoot, 'netns');
    expect(existsSync(netns) ? readdirSync(netns) : []).toEqual([]);
    // No pod is listed for the interrupted call once it has failed. Its undo removes the pod, unless
    // the shim was still down when the call failed (its restart outlasted the call's 5 s heartbeat
    // wait, as under load): then the gateway's collection of failed pods does, as at every start.
    expect(await run).toBeInstanceOf(Error);
    const crashPods = async () =>
      (await rpc<{ items: Json[] }>('ListPodSandbox', {})).items.filter(
        (p) => (p.metadata as Json).name === 'crash',
      );
    if ((await crashPods()).length > 0) await s.restartGateway();
    await until('no pod listed for the interrupted call', async () => (await crashPods()).length === 0);
  });

  it('then gives the next pod an address, and removing it frees it', async () => {
    const pod = await runPod('after-crash');
    const st = await rpc<{ status: { state: string; network: { ip: string } } }>('PodSandboxStatus', {
      pod_sandbox_id: pod,
    });
    expect(st.status.state).toBe('SANDBOX_READY');
    expect(leases()).toEqual([st.status.network.ip]);
    await rpc('StopPodSandbox', { pod_sandbox_id: pod });
    await rpc('RemovePodSandbox', { pod_sandbox_id: pod });
    expect(leases()).toEqual([]);
  });
});
