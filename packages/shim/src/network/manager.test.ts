import { type ChildProcess, execFile } from 'node:child_process';
import { mkdir, readdir, readFile, stat, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { cniGatePlugin, cniRecorder } from '@berth/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  chainsOf,
  fetchHost,
  fetchIn,
  filesOf,
  iptablesLines,
  type NetWorld,
  netWorld,
  podId,
  present,
  serveIn,
} from '../testing/network.js';
import { DEFAULT_CONFLIST, legacyDefaultConfList } from './default-config.js';
import { NetworkManager } from './manager.js';
import { removeNetns } from './netns.js';
import { removeSubnetRule } from './subnet-masq.js';

const exec = promisify(execFile);
// A subnet of its own for this file, far from 10.88/16 and from the recovery test's.
const SUBNET = '10.199.1.0/24';
// The default conflist of an older berth (the bridge masquerading per pod), on a subnet of its own.
const LEGACY_SUBNET = '10.199.4.0/24';
let w: NetWorld;
let m: NetworkManager;
let legacy: NetworkManager;
const servers: ChildProcess[] = [];
const pods: string[] = [];

beforeAll(async () => {
  w = await netWorld('mgr');
  m = new NetworkManager(options());
  const confDir = join(w.dir, 'legacy');
  await mkdir(confDir);
  const list = legacyDefaultConfList({
    name: `l${w.bridge}`,
    // A bridge of its own: a gateway address of another subnet on the same bridge fails the ADD.
    bridge: `${w.bridge}l`,
    subnet: LEGACY_SUBNET,
    dataDir: w.dataDir,
  });
  await writeFile(join(confDir, DEFAULT_CONFLIST), JSON.stringify(list));
  legacy = new NetworkManager({ layout: w.layout, confDir, pluginTimeoutMs: 20_000 });
});
afterAll(async () => {
  for (const s of servers) s.kill('SIGKILL');
  for (const id of pods) await m?.teardown(id).catch(() => undefined);
  await removeSubnetRule({ network: `t${w.bridge}`, subnet: SUBNET, iptables: 'iptables' });
  await exec('ip', ['link', 'del', `${w.bridge}l`]).catch(() => undefined);
  await w?.close();
});

/**
 * The nat rules that masquerade `subnet`: berth's one for `network`, or any rule not berth's.
 * Another berth network's rule on the same subnet (a crashed earlier run's, whose bridge had
 * another name) is not this test's.
 */
async function subnetRules(subnet: string, network: string): Promise<string[]> {
  return (await iptablesLines()).filter(
    (l) =>
      l.includes(`-s ${subnet} `) &&
      l.includes('MASQUERADE') &&
      (!l.includes('"berth network ') || l.includes(`"berth network ${network}"`)),
  );
}

function options(): ConstructorParameters<typeof NetworkManager>[0] {
  return {
    layout: w.layout,
    confDir: w.confDir,
    defaults: { bridge: w.bridge, subnet: SUBNET, dataDir: w.dataDir, name: `t${w.bridge}` },
    pluginTimeoutMs: 20_000,
  };
}

async function pod(tag: string, opts?: Parameters<NetworkManager['setup']>[1]) {
  const id = podId(tag);
  pods.push(id);
  return m.setup(id, opts);
}

describe('pods on the default bridge', () => {
  it('installs the default conflist and two pods reach each other by IP over TCP', async () => {
    const a = await pod('a');
    const b = await pod('b');
    const conf = JSON.parse(await readFile(join(w.confDir, DEFAULT_CONFLIST), 'utf8'));
    expect(conf.plugins.map((p: { type: string }) => p.type)).toEqual(['bridge', 'portmap']);
    expect(conf.plugins[0].bridge).toBe(w.bridge);
    expect(conf.plugins[0].ipMasq).toBe(false);
    expect(conf.berth).toEqual({ masquerade: 'subnet' });
    expect(a.ips[0]?.address).toMatch(/^10\.199\.1\.\d+\/24$/);
    expect(a.gateway).toBe('10.199.1.1');
    expect(a.interface).toBe('eth0');
    expect(a.ips[0]?.address).not.toBe(b.ips[0]?.address);
    const bIp = b.ips[0]?.address.split('/')[0] ?? '';
    servers.push(await serveIn(b.netnsPath, 7000, `hello from ${b.podId}`));
    expect(await fetchIn(a.netnsPath, bIp, 7000)).toBe(`hello from ${b.podId}`);
    // Loopback is up inside the pod: the server answers on 127.0.0.1 there too.
    expect(await fetchIn(b.netnsPath, '127.0.0.1', 7000)).toBe(`hello from ${b.podId}`);
    // A second setup of the same pod is the same network, not a second address.
    expect(await m.setup(a.podId)).toEqual(a);
    expect(await m.status(a.podId)).toEqual(a);
    expect((await m.list()).map((p) => p.podId)).toEqual(expect.arrayContaining([a.podId, b.podId]));
  });

  it('a published port answers on the host at 127.0.0.1 and the gateway; teardown removes its iptables rules', async () => {
    const hostPort = 20000 + Math.floor(Math.random() * 20000);
    const p = await pod('pm', { portMappings: [{ hostPort, containerPort: 8080, protocol: 'tcp' }] });
    servers.push(await serveIn(p.netnsPath, 8080, 'published'));
    expect(await fetchHost('127.0.0.1', hostPort)).toBe('published');
    expect(await fetchHost(p.gateway ?? '', hostPort)).toBe('published');
    const before = await iptablesLines();
    const chains = chainsOf(before, p.podId);
    // portmap's DNAT chain only: berth masquerades the network with one rule, not a chain per pod.
    expect(chains.filter((c) => !c.startsWith('CNI-DN-'))).toEqual([]);
    expect(chains).toHaveLength(1);
    await m.teardown(p.podId);
    const after = (await iptablesLines()).join('\n');
    expect(after).not.toContain(p.podId);
    for (const c of chains) expect(after).not.toContain(c);
    await expect(fetchHost('127.0.0.1', hostPort)).rejects.toThrow();
  });

  it('teardown releases the address (lease file gone, namespace and record gone) and is idempotent', async () => {
    const p = await pod('rel');
    const ip = p.ips[0]?.address.split('/')[0] ?? '';
    const leases = join(w.dataDir, `t${w.bridge}`);
    expect(await filesOf(leases)).toContain(ip);
    await m.teardown(p.podId);
    expect(await filesOf(leases)).not.toContain(ip);
    expect(await present(p.netnsPath)).toBe(false);
    expect(await filesOf(m.paths.stateDir)).not.toContain(`${p.podId}.json`);
    expect(await m.status(p.podId)).toBeUndefined();
    await m.teardown(p.podId);
  });

  it('prepare pins the namespace alone, kept by recovery; setup attaches that same namespace', async () => {
    const id = podId('prep');
    pods.push(id);
    const path = await m.prepare(id);
    expect(path).toBe(m.netnsPath(id));
    expect(await m.prepare(id)).toBe(path);
    // The inode of a pinned namespace file is the namespace's own: it tells two namespaces apart.
    const ns = (await stat(path)).ino;
    expect(await m.status(id)).toBeUndefined();
    expect((await m.list()).find((p) => p.podId === id)?.ips).toEqual([]);
    const report = await new NetworkManager(options()).recover();
    expect(report.kept).toContain(id);
    expect(report.released).not.toContain(id);
    const p = await m.setup(id);
    expect((await stat(path)).ino).toBe(ns);
    expect(p.ips).toHaveLength(1);
    const ip = p.ips[0]?.address.split('/')[0] ?? '';
    expect(await filesOf(join(w.dataDir, `t${w.bridge}`))).toContain(ip);
    await m.teardown(id);
    expect(await filesOf(join(w.dataDir, `t${w.bridge}`))).not.toContain(ip);
    expect(await present(path)).toBe(false);
  });

  it('teardown of a pod with a namespace only removes it and its record', async () => {
    const id = podId('prep2');
    pods.push(id);
    const path = await m.prepare(id);
    expect(await filesOf(m.paths.stateDir)).toContain(`${id}.json`);
    await m.teardown(id);
    expect(await present(path)).toBe(false);
    expect(await filesOf(m.paths.stateDir)).not.toContain(`${id}.json`);
    expect((await m.list()).map((p) => p.podId)).not.toContain(id);
  });

  it('teardown of a pod whose namespace is already gone still releases its address (older default: per-pod chains)', async () => {
    const p = await legacy.setup(podId('gone'));
    pods.push(p.podId);
    const ip = p.ips[0]?.address.split('/')[0] ?? '';
    const chains = chainsOf(await iptablesLines(), p.podId);
    expect(chains.length).toBeGreaterThan(0);
    await removeNetns(p.netnsPath);
    await legacy.teardown(p.podId);
    // The bridge plugin cannot find these without the namespace; berth removes them itself.
    const after = (await iptablesLines()).join('\n');
    expect(after).not.toContain(p.podId);
    for (const c of chains) expect(after).not.toContain(c);
    expect(await filesOf(join(w.dataDir, `l${w.bridge}`))).not.toContain(ip);
    expect(await legacy.status(p.podId)).toBeUndefined();
    // berth adds no rule of its own for a list without its mark (rules of other networks on the
    // same subnet, another test's on this shared host, are not this network's).
    expect(
      (await subnetRules(LEGACY_SUBNET, `l${w.bridge}`)).filter((l) =>
        l.includes(`"berth network l${w.bridge}"`),
      ),
    ).toEqual([]);
  });

  it('CHECK passes on a whole pod and names the plugin once its interface is gone (older default)', async () => {
    const p = await legacy.setup(podId('chk'));
    pods.push(p.podId);
    await legacy.check(p.podId);
    await exec('nsenter', [`--net=${p.netnsPath}`, 'ip', 'link', 'del', 'eth0']);
    await expect(legacy.check(p.podId)).rejects.toThrow(
      /^CNI plugin "bridge" CHECK \(network "l[^"]+", container "chk-[0-9a-f]+"\)/,
    );
    // With its interface gone the bridge plugin cannot find the pod's masquerade rules: berth does.
    const chains = chainsOf(await iptablesLines(), p.podId);
    expect(chains.length).toBeGreaterThan(0);
    await legacy.teardown(p.podId);
    const after = (await iptablesLines()).join('\n');
    expect(after).not.toContain(p.podId);
    for (const c of chains) expect(after).not.toContain(c);
    await expect(legacy.check(p.podId)).rejects.toThrow(`pod "${p.podId}" has no network set up`);
  });

  it('masquerades the default network with one rule, there once across pods and a restart, kept at teardown', async () => {
    const rule = `-A POSTROUTING -s ${SUBNET} ! -d ${SUBNET} -m comment --comment "berth network t${w.bridge}" -j MASQUERADE`;
    const a = await pod('mq1');
    const b = await pod('mq2');
    expect(await subnetRules(SUBNET, `t${w.bridge}`)).toEqual([rule]);
    for (const p of [a, b]) expect(chainsOf(await iptablesLines(), p.podId)).toEqual([]);
    // A restarted shim checks again and finds it.
    const again = new NetworkManager(options());
    const c = await again.setup(podId('mq3'));
    pods.push(c.podId);
    expect(await subnetRules(SUBNET, `t${w.bridge}`)).toEqual([rule]);
    for (const p of [a, b]) await m.teardown(p.podId);
    await again.teardown(c.podId);
    expect(await subnetRules(SUBNET, `t${w.bridge}`)).toEqual([rule]);
  });

  it('pods set up at the same time get distinct addresses; one pod set up twice at once gets one', async () => {
    const many = await Promise.all(['c1', 'c2', 'c3', 'c4'].map((t) => pod(t)));
    expect(new Set(many.map((p) => p.ips[0]?.address)).size).toBe(4);
    const id = podId('twice');
    pods.push(id);
    const [x, y] = await Promise.all([m.setup(id), m.setup(id)]);
    expect(y).toEqual(x);
    const leases = await filesOf(join(w.dataDir, `t${w.bridge}`));
    expect(leases.filter((f) => f === x.ips[0]?.address.split('/')[0])).toHaveLength(1);
    for (const p of [...many, x]) await m.teardown(p.podId);
  });

  it("runs portmap only for a pod that publishes a port on berth's network, and DEL runs what ADD ran", async () => {
    // A plugin dir whose portmap notes each call and runs the real one.
    const dir = join(w.dir, 'wrapped-plugins');
    const calls = join(w.dir, 'portmap-calls');
    await mkdir(dir, { recursive: true });
    for (const name of await readdir('/usr/lib/cni'))
      if (name !== 'portmap')
        await symlink(join('/usr/lib/cni', name), join(dir, name)).catch(() => undefined);
    await writeFile(
      join(dir, 'portmap'),
      `#!/bin/sh\necho "$CNI_COMMAND $CNI_CONTAINERID" >> ${calls}\nexec /usr/lib/cni/portmap "$@"\n`,
      { mode: 0o755 },
    );
    const ran = async () => (await readFile(calls, 'utf8').catch(() => '')).split('\n').filter(Boolean);
    const wm = new NetworkManager({ ...options(), pluginDirs: [dir] });
    const record = async (id: string) =>
      JSON.parse(await readFile(join(wm.paths.stateDir, `${id}.json`), 'utf8')) as {
        network: { conf: { plugins: { type: string }[] } };
      };
    const plain = await wm.setup(podId('nopm'));
    pods.push(plain.podId);
    expect((await record(plain.podId)).network.conf.plugins.map((p) => p.type)).toEqual(['bridge']);
    expect(plain.ips[0]?.address).toMatch(/^10\.199\.1\./);
    const hostPort = 20000 + Math.floor(Math.random() * 20000);
    const mapped = await wm.setup(podId('withpm'), {
      portMappings: [{ hostPort, containerPort: 8080, protocol: 'tcp' }],
    });
    pods.push(mapped.podId);
    expect((await record(mapped.podId)).network.conf.plugins.map((p) => p.type)).toEqual([
      'bridge',
      'portmap',
    ]);
    await wm.teardown(plain.podId);
    await wm.teardown(mapped.podId);
    expect(await ran()).toEqual([`ADD ${mapped.podId}`, `DEL ${mapped.podId}`]);
    // A list berth did not write (here its older default, without the mark) runs whole.
    const lm = new NetworkManager({ layout: w.layout, confDir: join(w.dir, 'legacy'), pluginDirs: [dir] });
    const other = await lm.setup(podId('legacypm'));
    await lm.teardown(other.podId);
    expect((await ran()).slice(2)).toEqual([`ADD ${other.podId}`, `DEL ${other.podId}`]);
  });

  it("brings lo up in the addon's thread, and runs the loopback plugin only for a namespace it did not make", async () => {
    // A plugin dir whose loopback notes each call and runs the real one.
    const dir = join(w.dir, 'wrapped-loopback');
    const calls = join(w.dir, 'loopback-calls');
    await mkdir(dir, { recursive: true });
    for (const name of await readdir('/usr/lib/cni'))
      if (name !== 'loopback')
        await symlink(join('/usr/lib/cni', name), join(dir, name)).catch(() => undefined);
    await writeFile(
      join(dir, 'loopback'),
      `#!/bin/sh\necho "$CNI_COMMAND $CNI_CONTAINERID" >> ${calls}\nexec /usr/lib/cni/loopback "$@"\n`,
      { mode: 0o755 },
    );
    const ran = async () => (await readFile(calls, 'utf8').catch(() => '')).split('\n').filter(Boolean);
    const wm = new NetworkManager({ ...options(), pluginDirs: [dir] });
    const recordFile = (id: string) => join(wm.paths.stateDir, `${id}.json`);
    const loFlags = async (netns: string) =>
      (await exec('nsenter', [`--net=${netns}`, 'ip', '-o', 'link', 'show', 'lo'])).stdout;
    // Made and set up in one go, and made ahead (prepare, as a CRI pod's) then set up.
    const made = await wm.setup(podId('lo-setup'));
    pods.push(made.podId);
    const ahead = podId('lo-ahead');
    pods.push(ahead);
    await wm.prepare(ahead);
    expect(JSON.parse(await readFile(recordFile(ahead), 'utf8')).loopbackUp).toBe(true);
    const aheadNet = await wm.setup(ahead);
    for (const n of [made, aheadNet]) expect(await loFlags(n.netnsPath)).toMatch(/<LOOPBACK,UP,LOWER_UP>/);
    expect(await ran()).toEqual([]);
    // A namespace an older shim recorded (no loopbackUp), its lo down: the plugin brings it up.
    const old = podId('lo-old');
    pods.push(old);
    const path = await wm.prepare(old);
    const { loopbackUp: _up, ...rec } = JSON.parse(await readFile(recordFile(old), 'utf8'));
    await writeFile(recordFile(old), JSON.stringify(rec));
    await exec('nsenter', [`--net=${path}`, 'ip', 'link', 'set', 'lo', 'down']);
    expect(await loFlags(path)).not.toMatch(/[<,]UP[,>]/);
    await wm.setup(old);
    expect(await ran()).toEqual([`ADD ${old}`]);
    expect(await loFlags(path)).toMatch(/<LOOPBACK,UP,LOWER_UP>/);
    for (const id of [made.podId, ahead, old]) await wm.teardown(id);
  });

  it('lists the networks of the conf dir', async () => {
    expect(await m.listNetworks()).toEqual([
      {
        name: `t${w.bridge}`,
        cniVersion: '1.0.0',
        plugins: ['bridge', 'portmap'],
        subnets: [SUBNET],
        file: join(w.confDir, DEFAULT_CONFLIST),
        default: true,
      },
    ]);
  });
});

describe('a network whose range has one address', () => {
  it('hands the same address out again once the pod holding it is torn down', async () => {
    const confDir = join(w.dir, 'one');
    await mkdir(confDir);
    const ipam = {
      type: 'host-local',
      dataDir: w.dataDir,
      ranges: [[{ subnet: '10.199.8.0/29', rangeStart: '10.199.8.5', rangeEnd: '10.199.8.5' }]],
    };
    const list = {
      cniVersion: '1.0.0',
      name: `one${w.bridge}`,
      plugins: [{ type: 'bridge', bridge: w.bridge, ipam }],
    };
    await writeFile(join(confDir, '50-one.conflist'), JSON.stringify(list));
    const one = new NetworkManager({ layout: w.layout, confDir });
    const first = await one.setup(podId('one'));
    expect(first.ips[0]?.address).toBe('10.199.8.5/29');
    const second = podId('two');
    await expect(one.setup(second)).rejects.toThrow(/CNI plugin "bridge" ADD .*no IP addresses available/);
    // The failed setup left nothing behind.
    expect(await present(one.netnsPath(second))).toBe(false);
    expect(await one.status(second)).toBeUndefined();
    await one.teardown(first.podId);
    const again = await one.setup(second);
    expect(again.ips[0]?.address).toBe('10.199.8.5/29');
    await one.teardown(second);
  });
});

describe('the default network moved to a pod CIDR', () => {
  it('deletes the old subnet rule and masquerades the new subnet from the next pod', async () => {
    const [from, to] = ['10.199.5.0/24', '10.199.6.0/24'];
    const name = `c${w.bridge}`;
    const bridge = `${w.bridge}c`;
    const defaults = { name, bridge, subnet: from, dataDir: w.dataDir };
    const confDir = join(w.dir, 'cidr');
    // Records of its own: the pod CIDR can move only with no pod of this manager attached.
    const layout = { stateRoot: join(w.dir, 'cidr-state'), runRoot: join(w.dir, 'run') };
    const cm = new NetworkManager({ layout, confDir, defaults, pluginTimeoutMs: 20_000 });
    try {
      const p = await cm.setup(podId('cidr1'));
      expect(await subnetRules(from, name)).toHaveLength(1);
      await cm.teardown(p.podId);
      await expect(cm.setPodCidr([to])).resolves.toMatchObject({ applied: true, subnet: to });
      expect(await subnetRules(from, name)).toEqual([]);
      const q = await cm.setup(podId('cidr2'));
      expect(q.ips[0]?.address).toMatch(/^10\.199\.6\./);
      expect(await subnetRules(to, name)).toHaveLength(1);
      await cm.teardown(q.podId);
    } finally {
      for (const subnet of [from, to])
        await removeSubnetRule({ network: name, subnet, iptables: 'iptables' });
      await exec('ip', ['link', 'del', bridge]).catch(() => undefined);
    }
  });
});

describe("a cluster's CNI config dropped beside berth's default", () => {
  it("takes the next pod, whatever its name; pods already on berth's default tear down as set up", async () => {
    const [mine, theirs] = ['10.199.10.0/24', '10.199.11.0/24'];
    const name = `k${w.bridge}`;
    const [ownBridge, clusterBridge] = [`${w.bridge}d`, `${w.bridge}k`];
    const confDir = join(w.dir, 'cluster');
    const defaults = { name, bridge: ownBridge, subnet: mine, dataDir: w.dataDir };
    const km = new NetworkManager({ layout: w.layout, confDir, defaults, pluginTimeoutMs: 20_000 });
    const cluster = {
      cniVersion: '1.0.0',
      name: `cl${w.bridge}`,
      plugins: [
        {
          type: 'bridge',
          bridge: clusterBridge,
          isGateway: true,
          ipam: { type: 'host-local', dataDir: w.dataDir, ranges: [[{ subnet: theirs }]] },
        },
      ],
    };
    try {
      const before = await km.setup(podId('own'));
      expect(before.ips[0]?.address).toMatch(/^10\.199\.10\./);
      // Sorts after 10-berth.conflist, as 10-calico, 10-flannel and 10-kindnet do.
      await writeFile(join(confDir, '10-cluster.conflist'), JSON.stringify(cluster));
      const after = await km.setup(podId('cl'));
      expect(after.network).toBe(cluster.name);
      expect(after.confFile).toBe(join(confDir, '10-cluster.conflist'));
      expect(after.ips[0]?.address).toMatch(/^10\.199\.11\./);
      expect((await km.listNetworks()).map((n) => [n.name, n.subnets, n.default])).toEqual([
        [name, [mine], false],
        [cluster.name, [theirs], true],
      ]);
      // The pod set up on berth's default keeps it, and its DEL releases its lease there.
      expect(await km.status(before.podId)).toEqual(before);
      await km.teardown(before.podId);
      expect(await filesOf(join(w.dataDir, name))).not.toContain(before.ips[0]?.address.split('/')[0]);
      await km.teardown(after.podId);
      expect(await filesOf(join(w.dataDir, cluster.name))).not.toContain(after.ips[0]?.address.split('/')[0]);
    } finally {
      await removeSubnetRule({ network: name, subnet: mine, iptables: 'iptables' });
      for (const b of [ownBridge, clusterBridge]) await exec('ip', ['link', 'del', b]).catch(() => undefined);
    }
  });
});

describe("a Kubernetes pod's identity and capabilities", () => {
  it('reach every plugin as CNI_ARGS and runtimeConfig on ADD, and on the DEL of a restarted shim', async () => {
    // A plugin that notes its CNI_COMMAND, CNI_ARGS and stdin config, and passes the result on.
    const dir = join(w.dir, 'record-plugins');
    const calls = join(w.dir, 'record-calls');
    await mkdir(dir, { recursive: true });
    const recorder = cniRecorder(calls);
    await writeFile(join(dir, 'record'), cniGatePlugin(recorder.add, recorder.del), { mode: 0o755 });
    const confDir = join(w.dir, 'k8s');
    await mkdir(confDir);
    const bridge = `${w.bridge}p`;
    const list = {
      cniVersion: '1.0.0',
      name: `p${w.bridge}`,
      plugins: [
        {
          type: 'bridge',
          bridge,
          isGateway: true,
          ipam: { type: 'host-local', dataDir: w.dataDir, ranges: [[{ subnet: '10.199.12.0/24' }]] },
        },
        // The real plugin: the pod's ingress rate becomes a tbf qdisc on its host-side veth.
        { type: 'bandwidth', capabilities: { bandwidth: true } },
        { type: 'record', capabilities: { bandwidth: true, dns: true, portMappings: true } },
      ],
    };
    await writeFile(join(confDir, '10-k8s.conflist'), JSON.stringify(list));
    const opts = { layout: w.layout, confDir, pluginDirs: [dir, '/usr/lib/cni'], pluginTimeoutMs: 20_000 };
    const pod = {
      namespace: 'team-a',
      name: 'web-0',
      uid: 'a7c3e5f0-1b2d-4c6e-8f90-123456789abc',
      sandboxId: 'f'.repeat(64),
    };
    const bandwidth = {
      ingressRate: 1_000_000,
      ingressBurst: 4294967295,
      egressRate: 10485760,
      egressBurst: 4294967295,
    };
    const dns = { servers: ['10.96.0.10'], searches: ['team-a.svc.cluster.local'], options: ['ndots:5'] };
    const id = podId('k8s');
    try {
      const p = await new NetworkManager(opts).setup(id, { pod, bandwidth, dns });
      expect(p.ips[0]?.address).toMatch(/^10\.199\.12\./);
      const args = `IgnoreUnknown=1;K8S_POD_NAMESPACE=team-a;K8S_POD_NAME=web-0;K8S_POD_INFRA_CONTAINER_ID=${pod.sandboxId};K8S_POD_UID=${pod.uid}`;
      const lines = async () =>
        (await readFile(calls, 'utf8'))
          .split('\n')
          .filter(Boolean)
          .map((l) => JSON.parse(l));
      const [add] = await lines();
      expect(add.command).toBe('ADD');
      expect(add.args).toBe(args);
      // Only the capabilities the plugin declares, and none without a value (no port mappings).
      expect(add.conf.runtimeConfig).toEqual({ bandwidth, dns });
      const rec = JSON.parse(
        await readFile(join(w.layout.stateRoot, 'network', 'pods', `${id}.json`), 'utf8'),
      );
      const hostVeth = (rec.result.interfaces as { name: string; sandbox?: string }[]).find(
        (i) => !i.sandbox && i.name !== bridge,
      )?.name;
      const { stdout } = await exec('tc', ['qdisc', 'show', 'dev', hostVeth ?? '']);
      expect(stdout).toMatch(/tbf .*rate 1Mbit/);
      // A shim started afresh knows them from the pod's record alone.
      await new NetworkManager(opts).teardown(id);
      const del = (await lines()).filter((l) => l.command === 'DEL');
      expect(del).toHaveLength(1);
      expect(del[0].args).toBe(args);
      expect(del[0].conf.runtimeConfig).toEqual({ bandwidth, dns });
      // A pod set up without identity (berth run) gets no CNI_ARGS.
      const plain = podId('plain');
      await new NetworkManager(opts).setup(plain);
      await new NetworkManager(opts).teardown(plain);
      expect((await lines()).slice(-2).map((l) => [l.command, l.args, l.conf.runtimeConfig])).toEqual([
        ['ADD', null, undefined],
        ['DEL', null, undefined],
      ]);
    } finally {
      await new NetworkManager(opts).teardown(id, { force: true }).catch(() => undefined);
      await exec('ip', ['link', 'del', bridge]).catch(() => undefined);
    }
  });
});
