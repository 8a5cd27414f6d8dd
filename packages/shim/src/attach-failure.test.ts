// A create with startAttached whose pod's CNI ADD fails, over NATS against the agent process.
// runc goes through a wrapper that holds the `runc create` of a pod named late-* until that pod's
// failed ADD has been undone (its DEL ran and its record left phase adding): the order in which
// an ADD failing at once meets a runc create still under way, made certain instead of likely.
// Then creates that outlast their start deadline (a slow ADD, a slow runc create), against an
// agent in this process whose deadline is short.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { BerthError, Code, ShimApi } from '@berth/api';
import { type Client, localClient } from '@berth/kit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NetworkManager } from './network/manager.js';
import { removeSubnetRule } from './network/subnet-masq.js';
import { createHandlers } from './service.js';
import {
  bindRootfs,
  codeOf,
  type LocalAgent,
  makeSpec,
  type ShimWorld,
  startLocalAgent,
  startWorld,
} from './testing/fixture.js';
import { podId } from './testing/network.js';

const exec = promisify(execFile);
const bridge = `bs${randomBytes(4).toString('hex')}`;
const SUBNET = '10.199.9.0/24';
const PLUGIN_DIRS = ['/usr/lib/cni', '/opt/cni/bin'];
const INJECTED = 'TEST-INJECTED-ADD-FAILURE';
/** How long the ADD of a slow-* pod and the runc create of a slowrunc-* task take, s. */
const SLOW_S = 2;
/** The start deadline of the in-process agent, ms: well below SLOW_S. */
const START_WITHIN_MS = 500;
let w: ShimWorld;
let base: string;
let dataDir: string;
/** The agent in this process (short start deadline), beside the world's agent process. */
let la: LocalAgent;
let local: Client<typeof ShimApi>;

beforeAll(async () => {
  base = join('/tmp', `berth-attfail-${randomBytes(4).toString('hex')}`);
  dataDir = join(base, 'ipam');
  const plugins = join(base, 'plugins');
  const marks = join(base, 'marks');
  const stateRoot = join(base, 'state-of-world');
  await mkdir(plugins, { recursive: true });
  await mkdir(marks, { recursive: true });
  const real = PLUGIN_DIRS.map((d) => join(d, 'bridge')).find((f) => existsSync(f)) ?? 'bridge';
  // The bridge ADD of a late-* pod really attaches (a lease, a veth), then reports a failure;
  // its DEL runs the real one and leaves a mark.
  await writeFile(
    join(plugins, 'bridge'),
    `#!/bin/sh
case "$CNI_COMMAND:$CNI_CONTAINERID" in
ADD:late-*) ${real} >/dev/null; echo '{"cniVersion":"1.0.0","code":100,"msg":"${INJECTED}"}'; exit 1 ;;
DEL:late-*) ${real}; rc=$?; touch "${marks}/del-$CNI_CONTAINERID"; exit $rc ;;
ADD:slow-*) sleep ${SLOW_S} ;;
esac
exec ${real}
`,
    { mode: 0o755 },
  );
  // Task ids are the pod ids here. The record's path is read from the world's state root
  // (written below once the world exists), at most 10 s of waiting.
  await writeFile(
    join(base, 'runc'),
    `#!/bin/sh
for id; do :; done
case " $* :$id" in
*" create "*:late-*)
  root=$(cat "${stateRoot}")
  i=0
  while [ ! -e "${marks}/del-$id" ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i + 1)); done
  while grep -q '"phase":"adding"' "$root/network/pods/$id.json" 2>/dev/null && [ $i -lt 200 ]; do
    sleep 0.05; i=$((i + 1))
  done ;;
*" create "*:slowrunc-*) sleep ${SLOW_S} ;;
esac
exec /usr/sbin/runc "$@"
`,
    { mode: 0o755 },
  );
  w = await startWorld({
    shim: {
      runc: join(base, 'runc'),
      cniConfDir: join(base, 'net.d'),
      cniBridge: bridge,
      cniSubnet: SUBNET,
      cniDataDir: dataDir,
      cniNetwork: bridge,
      cniPluginDirs: [plugins, ...PLUGIN_DIRS],
    },
  });
  await writeFile(stateRoot, w.stateRoot);
  la = await startLocalAgent(w, `attfail-${randomBytes(4).toString('hex')}`, {
    root: base,
    runc: join(base, 'runc'),
    startWithinMs: START_WITHIN_MS,
  });
  const network = new NetworkManager({
    layout: la.layout,
    confDir: join(base, 'local-net.d'),
    pluginDirs: [plugins, ...PLUGIN_DIRS],
    defaults: { name: bridge, bridge, subnet: SUBNET, dataDir },
  });
  local = localClient(ShimApi, createHandlers(la.agent, network));
});
afterAll(async () => {
  for (const c of [w?.client, local]) {
    for (const p of (await c?.['network-list']({}).catch(() => undefined))?.pods ?? []) {
      await c?.['network-teardown']({ podId: p.podId, force: true }).catch(() => undefined);
    }
  }
  // A task a failed test left running: killed, its exit awaited, then deleted (mounts and all).
  for (const t of (await local?.list({}).catch(() => undefined))?.tasks ?? []) {
    const ref = { namespace: t.namespace, id: t.id };
    await local.kill({ ...ref, signal: 'SIGKILL', all: true }).catch(() => undefined);
    if (t.status !== 'created') await local.wait(ref, { timeoutMs: 10_000 }).catch(() => undefined);
    await local.delete(ref).catch(() => undefined);
  }
  await la?.close();
  await w?.close();
  await removeSubnetRule({ network: bridge, subnet: SUBNET, iptables: 'iptables' });
  await exec('ip', ['link', 'del', bridge]).catch(() => undefined);
  await exec('rm', ['-rf', base]).catch(() => undefined);
});

/** The host-local leases held for a pod (files of the network's data dir naming it). */
async function leasesOf(id: string): Promise<string[]> {
  const dir = join(dataDir, bridge);
  const held: string[] = [];
  for (const f of await readdir(dir).catch(() => [] as string[])) {
    if ((await readFile(join(dir, f), 'utf8').catch(() => '')).startsWith(id)) held.push(f);
  }
  return held;
}

/** A startAttached create of task `id` in pod `id` running `args`; the error it fails with. */
async function createAttached(id: string, args: string[]): Promise<BerthError> {
  const netnsPath = join(w.runRoot, 'netns', id);
  const spec = (await makeSpec(args, { cgroupsPath: `/berth-test/${w.node}/${id}` })) as {
    linux: { namespaces: { type: string; path?: string }[] };
  };
  spec.linux.namespaces = spec.linux.namespaces.map((n) =>
    n.type === 'network' ? { type: 'network', path: netnsPath } : n,
  );
  const err = await w.client
    .create({
      namespace: 'net',
      id,
      spec,
      rootfs: bindRootfs(w.rootfs),
      terminal: false,
      stdin: false,
      netnsPod: id,
      startAttached: { portMappings: [] },
    })
    .then(
      () => undefined,
      (e: unknown) => e,
    );
  expect(err).toBeInstanceOf(BerthError);
  return err as BerthError;
}

/** What must be left once the caller tore the pod down: no task, no pod, no namespace, no lease. */
async function expectNothingLeft(id: string) {
  expect(await w.client['network-teardown']({ podId: id, force: false })).toEqual({ errors: [] });
  expect(await codeOf(w.client.state({ namespace: 'net', id }))).toBe(Code.NOT_FOUND);
  expect((await w.client['network-list']({})).pods.map((p) => p.podId)).not.toContain(id);
  expect(await readdir(join(w.runRoot, 'netns')).catch(() => [])).not.toContain(id);
  expect(await leasesOf(id)).toEqual([]);
}

describe('a create with startAttached whose ADD fails', () => {
  it("fails with the ADD's error, the namespace kept unattached for the caller's teardown", async () => {
    const id = podId('late');
    const err = await createAttached(id, ['sleep', '300']);
    expect(err.message).toContain(INJECTED);
    expect(await codeOf(w.client.state({ namespace: 'net', id }))).toBe(Code.NOT_FOUND);
    // DEL undid the ADD (no lease, no address) and the namespace is still pinned for the teardown.
    expect(await leasesOf(id)).toEqual([]);
    const pod = (await w.client['network-list']({})).pods.find((p) => p.podId === id);
    expect(pod?.ips).toEqual([]);
    expect(await readdir(join(w.runRoot, 'netns'))).toContain(id);
    await expectNothingLeft(id);
  });

  it("reports the ADD's error when the task's create failed too", async () => {
    const id = podId('late');
    const err = await createAttached(id, ['/no/such/command']);
    expect(err.message).toContain(INJECTED);
    await expectNothingLeft(id);
  });
});

describe('a create with start that outlasts its start deadline', () => {
  /** The spec of task `id` running sleep, in pod `id`'s namespace when `pod`. */
  async function spec(id: string, pod: boolean) {
    const sp = (await makeSpec(['sleep', '300'], {
      cgroupsPath: `/berth-test/${la.agent.host.node}/${id}`,
    })) as {
      linux: { namespaces: { type: string; path?: string }[] };
    };
    if (pod) {
      const netnsPath = join(la.layout.runRoot, 'netns', id);
      sp.linux.namespaces = sp.linux.namespaces.map((n) =>
        n.type === 'network' ? { type: 'network', path: netnsPath } : n,
      );
    }
    return sp;
  }

  it('is not started when its ADD is not done by then: DEADLINE_EXCEEDED, no task', async () => {
    const id = podId('slow');
    const err = await local
      .create({
        namespace: 'net',
        id,
        spec: await spec(id, true),
        rootfs: bindRootfs(la.rootfs),
        terminal: false,
        stdin: false,
        netnsPod: id,
        startAttached: { portMappings: [] },
      })
      .catch((e: BerthError) => e);
    expect((err as BerthError).code).toBe(Code.DEADLINE_EXCEEDED);
    expect((err as BerthError).message).toContain(`task "${id}" not started`);
    expect(await codeOf(local.state({ namespace: 'net', id }))).toBe(Code.NOT_FOUND);
    // The teardown waits for the ADD still under way, then undoes it; the task never came back.
    expect(await local['network-teardown']({ podId: id, force: false })).toEqual({ errors: [] });
    expect(await codeOf(local.state({ namespace: 'net', id }))).toBe(Code.NOT_FOUND);
    expect((await local.list({})).tasks.map((t) => t.id)).not.toContain(id);
    expect(await leasesOf(id)).toEqual([]);
  });

  it('is not started when its runc create ends after it: DEADLINE_EXCEEDED, no task', async () => {
    const id = podId('slowrunc');
    const err = await local
      .create({
        namespace: 'net',
        id,
        spec: await spec(id, false),
        rootfs: bindRootfs(la.rootfs),
        terminal: false,
        stdin: false,
        start: true,
      })
      .catch((e: BerthError) => e);
    expect((err as BerthError).code).toBe(Code.DEADLINE_EXCEEDED);
    expect(await codeOf(local.state({ namespace: 'net', id }))).toBe(Code.NOT_FOUND);
    expect((await local.list({})).tasks.map((t) => t.id)).not.toContain(id);
  });

  it("is not started past its caller's time left (startWithinMs), shorter than the shim's own", async () => {
    // The world's shim has the default deadline (55 s): only the request's 500 ms stops the start.
    const id = podId('slowrunc');
    const err = await w.client
      .create({
        namespace: 'net',
        id,
        spec: await makeSpec(['sleep', '300'], { cgroupsPath: `/berth-test/${w.node}/${id}` }),
        rootfs: bindRootfs(w.rootfs),
        terminal: false,
        stdin: false,
        start: true,
        startWithinMs: 500,
      })
      .catch((e: BerthError) => e);
    expect((err as BerthError).code).toBe(Code.DEADLINE_EXCEEDED);
    expect((err as BerthError).message).toContain('did not finish within 500 ms');
    expect(await codeOf(w.client.state({ namespace: 'net', id }))).toBe(Code.NOT_FOUND);
    expect((await w.client.list({})).tasks.map((t) => t.id)).not.toContain(id);
  });
});
