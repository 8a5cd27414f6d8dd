import { spawn } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  chainsOf,
  filesOf,
  hangPlugin,
  iptablesLines,
  type NetWorld,
  netWorld,
  podId,
  present,
  until,
} from '../testing/network.js';
import { NetworkManager, type NetworkOptions } from './manager.js';
import { createNetns, isNetnsMounted, removeNetns } from './netns.js';

// The built module, as the shim runs it: the crashing setup runs in a process of its own.
const DIST = new URL('../../dist/network/manager.js', import.meta.url).pathname;
const SUBNET = '10.199.2.0/24';
const NET = 'recov';
let w: NetWorld;
let opts: NetworkOptions;
let hangPid: number | undefined;

beforeAll(async () => {
  w = await netWorld('rec');
  const pluginDir = join(w.dir, 'plugins');
  await mkdir(pluginDir, { recursive: true });
  await hangPlugin(pluginDir, join(w.dir, 'hang-started'));
  await mkdir(w.confDir, { recursive: true });
  const ipam = { type: 'host-local', dataDir: w.dataDir, ranges: [[{ subnet: SUBNET }]] };
  // bridge (lease, veth, masquerade rules), then a plugin that never answers ADD: a crash mid-chain.
  const plugins = [
    { type: 'bridge', bridge: w.bridge, isGateway: true, ipMasq: true, ipam },
    { type: 'hang' },
  ];
  await writeFile(
    join(w.confDir, '10-recov.conflist'),
    JSON.stringify({ cniVersion: '1.0.0', name: NET, plugins }),
  );
  opts = {
    layout: w.layout,
    confDir: w.confDir,
    pluginDirs: [pluginDir, '/usr/lib/cni'],
    pluginTimeoutMs: 120_000,
  };
});
afterAll(async () => {
  if (hangPid) process.kill(hangPid, 'SIGKILL');
  await w?.close();
});

/** Runs setup of `id` in a child process and SIGKILLs it once the hanging plugin has started. */
async function crashMidAdd(id: string): Promise<void> {
  const marker = join(w.dir, 'hang-started');
  const script = `const { NetworkManager } = await import(process.env.DIST); await new NetworkManager(JSON.parse(process.env.OPTS)).setup(process.env.POD);`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
    env: { ...process.env, DIST, OPTS: JSON.stringify(opts), POD: id },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const exited = new Promise((resolve) => child.on('exit', resolve));
  await until('the hanging plugin to start', () => present(marker));
  child.kill('SIGKILL');
  await exited;
  hangPid = Number((await readFile(marker, 'utf8')).trim());
}

describe('recovery after a crash', () => {
  it('a pod recorded mid-ADD by a killed process is deleted: lease, veth rules and namespace released; whole pods kept', async () => {
    // A pod already set up by an earlier run (with a chain that completes) must survive recovery.
    const wholeConf = join(w.dir, 'whole.d');
    await mkdir(wholeConf);
    const ipam = { type: 'host-local', dataDir: w.dataDir, ranges: [[{ subnet: SUBNET }]] };
    await writeFile(
      join(wholeConf, '10-recov.conflist'),
      JSON.stringify({
        cniVersion: '1.0.0',
        name: NET,
        plugins: [{ type: 'bridge', bridge: w.bridge, ipMasq: true, ipam }],
      }),
    );
    const whole = await new NetworkManager({ ...opts, confDir: wholeConf }).setup(podId('whole'));

    const id = podId('crash');
    await crashMidAdd(id);
    const m = new NetworkManager(opts);
    const record = JSON.parse(await readFile(join(m.paths.stateDir, `${id}.json`), 'utf8'));
    expect(record.phase).toBe('adding');
    expect(await isNetnsMounted(m.netnsPath(id))).toBe(true);
    const leases = await filesOf(join(w.dataDir, NET));
    expect(leases.filter((f) => f.startsWith('10.199.2.'))).toHaveLength(2);
    const chains = chainsOf(await iptablesLines(), id);
    expect(chains.length).toBeGreaterThan(0);

    const report = await m.recover();
    expect(report).toEqual({ released: [id], kept: [whole.podId], failed: [] });
    expect(await filesOf(join(w.dataDir, NET))).toContain(whole.ips[0]?.address.split('/')[0]);
    expect((await filesOf(join(w.dataDir, NET))).filter((f) => f.startsWith('10.199.2.'))).toHaveLength(1);
    expect(await present(m.netnsPath(id))).toBe(false);
    expect(await filesOf(m.paths.stateDir)).toEqual([`${whole.podId}.json`]);
    const after = (await iptablesLines()).join('\n');
    expect(after).not.toContain(id);
    for (const c of chains) expect(after).not.toContain(c);
    // The kept pod is what a restarted shim reports.
    expect(await m.status(whole.podId)).toEqual(whole);

    // A reboot takes the namespaces (run root) but not the records: recovery releases those pods.
    await removeNetns(whole.netnsPath);
    expect(await m.recover()).toEqual({ released: [whole.podId], kept: [], failed: [] });
    expect((await filesOf(join(w.dataDir, NET))).filter((f) => f.startsWith('10.199.2.'))).toEqual([]);
    expect((await iptablesLines()).join('\n')).not.toContain(whole.podId);
    expect(await filesOf(m.paths.stateDir)).toEqual([]);
  });

  it('namespace files without a record are removed', async () => {
    const m = new NetworkManager(opts);
    await mkdir(m.paths.netnsDir, { recursive: true });
    const stray = await createNetns(join(m.paths.netnsDir, 'stray'));
    await m.recover();
    expect(await present(stray)).toBe(false);
  });
});
