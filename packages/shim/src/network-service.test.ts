import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readlink, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { BerthError, Code } from '@berth/api';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { removeSubnetRule } from './network/subnet-masq.js';
import {
  bindRootfs,
  codeOf,
  makeSpec,
  newId,
  type ShimWorld,
  startWorld,
  waitForLog,
} from './testing/fixture.js';
import { fetchHost, podId, serveIn, until } from './testing/network.js';

const exec = promisify(execFile);
const bridge = `bs${randomBytes(4).toString('hex')}`;
const SUBNET = '10.199.7.0/24';
let w: ShimWorld;
let confDir: string;
let dataDir: string;

/** The plugin dirs the shim searches by default. */
const PLUGIN_DIRS = ['/usr/lib/cni', '/opt/cni/bin'];

beforeAll(async () => {
  const base = join('/tmp', `berth-netsvc-${randomBytes(4).toString('hex')}`);
  confDir = join(base, 'net.d');
  dataDir = join(base, 'ipam');
  // A bridge plugin whose ADD of a pod named slow-* takes 1 s more than runc create: a task
  // started before its pod's ADD is done would see no address.
  const plugins = join(base, 'plugins');
  const real = PLUGIN_DIRS.map((d) => join(d, 'bridge')).find((f) => existsSync(f)) ?? 'bridge';
  await mkdir(plugins, { recursive: true });
  await writeFile(
    join(plugins, 'bridge'),
    `#!/bin/sh\ncase "$CNI_COMMAND:$CNI_CONTAINERID" in ADD:slow-*) sleep 1 ;; esac\nexec ${real}\n`,
    { mode: 0o755 },
  );
  w = await startWorld({
    shim: {
      cniConfDir: confDir,
      cniBridge: bridge,
      cniSubnet: SUBNET,
      cniDataDir: dataDir,
      cniNetwork: bridge,
      cniPluginDirs: [plugins, ...PLUGIN_DIRS],
    },
  });
});
afterAll(async () => {
  // A failed test may leave pods: their namespaces must go before the world's files can.
  for (const p of (await w?.client['network-list']({}).catch(() => undefined))?.pods ?? []) {
    await w.client['network-teardown']({ podId: p.podId, force: true }).catch(() => undefined);
  }
  await w?.close();
  // The network's masquerade rule outlives its pods by design: this test's must not outlive it
  // (network/manager.test.ts checks a subnet carries no rule for a list without berth's mark; its
  // own, another: the two files may run at once).
  await removeSubnetRule({ network: bridge, subnet: SUBNET, iptables: 'iptables' });
  await exec('ip', ['link', 'del', bridge]).catch(() => undefined);
  await exec('rm', ['-rf', join(confDir, '..')]).catch(() => undefined);
});

/**
 * True when a TCP socket listens on `port` in the namespace (its /proc/net/tcp and tcp6, read from
 * inside; busybox nc listens on a dual-stack socket, which portmap's IPv4 DNAT reaches too).
 */
async function listening(netns: string, port: number): Promise<boolean> {
  const { stdout } = await exec('nsenter', [`--net=${netns}`, 'cat', '/proc/net/tcp', '/proc/net/tcp6']);
  const hex = port.toString(16).toUpperCase().padStart(4, '0');
  return stdout.split('\n').some((l) => / [0-9A-F]+:([0-9A-F]{4}) [0-9A-F]+:0000 0A /.exec(l)?.[1] === hex);
}

describe('shim network operations over NATS', () => {
  /** The interface names in a namespace, over netlink (sysfs would show the mount namespace's). */
  async function links(netnsPath: string): Promise<string[]> {
    const { stdout } = await exec('nsenter', [`--net=${netnsPath}`, 'ip', '-o', 'link', 'show']);
    return stdout
      .split('\n')
      .map((l) => /^\d+: ([^:@]+)/.exec(l)?.[1])
      .filter((n): n is string => n !== undefined)
      .sort();
  }

  /** True when the process runs in the namespace pinned at `netnsPath` (same nsfs inode). */
  async function inNetns(pid: number, netnsPath: string): Promise<boolean> {
    const link = await readlink(`/proc/${pid}/ns/net`);
    return link === `net:[${(await stat(netnsPath)).ino}]`;
  }

  /** A spec of `args` whose network namespace is `netnsPath` (the pod's, as the gateway names it). */
  async function podSpec(args: string[], taskId: string, netnsPath: string) {
    const spec = (await makeSpec(args, { cgroupsPath: `/berth-test/${w.node}/${taskId}` })) as {
      linux: { namespaces: { type: string; path?: string }[] };
    };
    spec.linux.namespaces = spec.linux.namespaces.map((n) =>
      n.type === 'network' ? { type: 'network', path: netnsPath } : n,
    );
    return spec;
  }

  /**
   * Creates task `taskId` of `spec` on the test rootfs in namespace "net", naming `netnsPod` if
   * given; with `startAttached`, started once that pod is attached (no published ports).
   */
  function createTask(
    taskId: string,
    spec: Record<string, unknown>,
    netnsPod?: string,
    o: { startAttached?: boolean } = {},
  ) {
    return w.client.create({
      namespace: 'net',
      id: taskId,
      spec,
      rootfs: bindRootfs(w.rootfs),
      terminal: false,
      stdin: false,
      ...(netnsPod ? { netnsPod } : {}),
      ...(o.startAttached ? { startAttached: { portMappings: [] } } : {}),
    });
  }

  /** A new pod id (`prefix`-...), where its namespace is pinned, a task id and a spec of `args` in it. */
  async function podTask(prefix: string, args: string[]) {
    const id = podId(prefix);
    const netnsPath = join(w.runRoot, 'netns', id);
    const taskId = newId();
    return { id, netnsPath, taskId, spec: await podSpec(args, taskId, netnsPath) };
  }

  /**
   * Kills (SIGKILL, all), waits for and deletes a task; `waitMayFail` lets the wait fail (a test
   * that failed before the task ran), else the wait's failure is the test's.
   */
  async function dropTask(taskId: string, waitMayFail: boolean): Promise<void> {
    await w.client.kill({ namespace: 'net', id: taskId, signal: 9, all: true }).catch(() => undefined);
    const waited = w.client.wait({ namespace: 'net', id: taskId }, { timeoutMs: 20_000 });
    await (waitMayFail ? waited.catch(() => undefined) : waited);
    await w.client.delete({ namespace: 'net', id: taskId });
  }

  it('lists the default network, sets a pod up with a published port, keeps it across an agent crash, tears it down', async () => {
    const list = await w.client['network-list']({});
    expect(list.networks).toEqual([
      {
        name: bridge,
        cniVersion: '1.0.0',
        plugins: ['bridge', 'portmap'],
        subnets: [SUBNET],
        file: join(confDir, '10-berth.conflist'),
        default: true,
      },
    ]);
    const id = podId('svc');
    const hostPort = 20000 + Math.floor(Math.random() * 20000);
    const net = await w.client['network-setup']({
      podId: id,
      portMappings: [{ hostPort, containerPort: 9000, protocol: 'tcp' }],
    });
    expect(net.netnsPath).toBe(join(w.runRoot, 'netns', id));
    expect(net.ips[0]?.address).toMatch(/^10\.199\.7\.\d+\/24$/);
    const server = await serveIn(net.netnsPath, 9000, 'over nats');
    try {
      expect(await fetchHost('127.0.0.1', hostPort)).toBe('over nats');
      await w.killAgent();
      await w.startAgent();
      // The restarted agent knows the pod from its record; the pod's network kept working.
      expect(await w.client['network-status']({ podId: id })).toEqual(net);
      expect((await w.client['network-list']({})).pods).toEqual([net]);
      expect(await fetchHost('127.0.0.1', hostPort)).toBe('over nats');
    } finally {
      server.kill('SIGKILL');
    }
    expect(await w.client['network-teardown']({ podId: id, force: false })).toEqual({ errors: [] });
    expect(await readdir(join(dataDir, bridge))).not.toContain(net.ips[0]?.address.split('/')[0]);
    const gone = await w.client['network-status']({ podId: id }).catch((e: BerthError) => e);
    expect(gone).toBeInstanceOf(BerthError);
    expect((gone as BerthError).code).toBe(Code.NOT_FOUND);
  });

  it('a runc container in the pod network (what `berth run --network bridge` does) has its address and serves on its published port', async () => {
    const id = podId('ctr');
    const hostPort = 20000 + Math.floor(Math.random() * 20000);
    const net = await w.client['network-setup']({
      podId: id,
      portMappings: [{ hostPort, containerPort: 9000, protocol: 'tcp' }],
    });
    const taskId = newId();
    // Join the pod's namespace instead of a new, empty one: the task-service's `network: <path>`.
    const spec = await podSpec(
      ['sh', '-c', 'cat /sys/class/net/eth0/address; exec nc -ll -p 9000 -e echo from-container'],
      taskId,
      net.netnsPath,
    );
    await createTask(taskId, spec);
    try {
      const st = await w.client.start({ namespace: 'net', id: taskId });
      await waitForLog(st.logPath as string, net.mac as string);
      await until('nc to listen in the pod', () => listening(net.netnsPath, 9000));
      expect(await fetchHost('127.0.0.1', hostPort)).toBe('from-container\n');
    } finally {
      await dropTask(taskId, false);
    }
    expect(await w.client['network-teardown']({ podId: id, force: false })).toEqual({ errors: [] });
  });

  it('a create naming its pod (netnsPod) pins the namespace itself; a crash, then setup attaches that one', async () => {
    const { id, netnsPath, taskId, spec } = await podTask('pin', ['sleep', '300']);
    await createTask(taskId, spec, id);
    try {
      // Pinned, recorded, not attached yet: what network-netns leaves.
      const pods = (await w.client['network-list']({})).pods.map((p) => p.podId);
      expect(pods).toContain(id);
      expect(await links(netnsPath)).toEqual(['lo']);
      // The agent dies between the pause's create and the pod's ADD; its successor attaches the
      // namespace the task already runs in.
      await w.killAgent();
      await w.startAgent();
      const net = await w.client['network-setup']({ podId: id, portMappings: [] });
      expect(net.netnsPath).toBe(netnsPath);
      const st = await w.client.start({ namespace: 'net', id: taskId });
      expect(await inNetns(st.pid, netnsPath)).toBe(true);
      expect(await links(netnsPath)).toEqual(['eth0', 'lo']);
    } finally {
      await dropTask(taskId, true);
    }
    expect(await w.client['network-teardown']({ podId: id, force: false })).toEqual({ errors: [] });
  });

  it('a create naming its pod while its setup runs joins the namespace setup pinned, one per pod', async () => {
    const { id, netnsPath, taskId, spec } = await podTask('both', ['sleep', '300']);
    const [net, created] = await Promise.all([
      w.client['network-setup']({ podId: id, portMappings: [] }),
      createTask(taskId, spec, id),
    ]);
    try {
      expect(net.netnsPath).toBe(netnsPath);
      expect(await inNetns(created.pid, netnsPath)).toBe(true);
      expect(await links(netnsPath)).toEqual(['eth0', 'lo']);
      expect((await w.client['network-list']({})).pods.filter((p) => p.podId === id)).toHaveLength(1);
    } finally {
      await dropTask(taskId, true);
    }
    expect(await w.client['network-teardown']({ podId: id, force: false })).toEqual({ errors: [] });
  });

  it('a create with startAttached starts its task once the pod is attached: the process sees its address at once', async () => {
    // What the process sees the moment it runs: an ADD still under way would leave only lo.
    const { id, netnsPath, taskId, spec } = await podTask('slow', [
      'sh',
      '-c',
      'ip -o -4 addr show eth0 | wc -l; sleep 300',
    ]);
    const st = await createTask(taskId, spec, id, { startAttached: true });
    try {
      expect(st.status).toBe('running');
      expect(await inNetns(st.pid, netnsPath)).toBe(true);
      const net = (await w.client['network-list']({})).pods.find((p) => p.podId === id);
      expect(net?.ips.map((i) => i.address)).toEqual(st.network?.ips.map((i) => i.address));
      expect(st.network?.ips[0]?.address).toMatch(/^10\.199\.7\.\d+\/24$/);
      await waitForLog(st.logPath ?? '', '1');
    } finally {
      await dropTask(taskId, true);
    }
    expect(await w.client['network-teardown']({ podId: id, force: false })).toEqual({ errors: [] });
  });

  it('a create with startAttached whose task cannot be made fails with the pod attached and no task left', async () => {
    const { id, netnsPath, taskId, spec } = await podTask('attfail', ['/no/such/command']);
    const err = await createTask(taskId, spec, id, { startAttached: true }).catch((e: BerthError) => e);
    expect(err).toBeInstanceOf(BerthError);
    expect(await codeOf(w.client.state({ namespace: 'net', id: taskId }))).toBe(Code.NOT_FOUND);
    // The ADD had settled before the reply: its pod is whole, and a teardown releases it.
    expect(await links(netnsPath)).toEqual(['eth0', 'lo']);
    expect(await w.client['network-teardown']({ podId: id, force: false })).toEqual({ errors: [] });
    expect((await w.client['network-list']({})).pods.map((p) => p.podId)).not.toContain(id);
  });

  it('a create whose spec joins another namespace than its netnsPod is refused, nothing pinned', async () => {
    const id = podId('other');
    const taskId = newId();
    const spec = await podSpec(['sleep', '300'], taskId, '/run/netns/elsewhere');
    const err = await createTask(taskId, spec, id).catch((e: BerthError) => e);
    expect((err as BerthError).code).toBe(Code.INVALID_ARGUMENT);
    expect((err as BerthError).message).toContain(join(w.runRoot, 'netns', id));
    expect((await w.client['network-list']({})).pods.map((p) => p.podId)).not.toContain(id);
  });

  it('rejects a bad pod id with INVALID_ARGUMENT naming the field', async () => {
    const err = await w.client['network-setup']({ podId: '../x', portMappings: [] }).catch(
      (e: BerthError) => e,
    );
    expect((err as BerthError).code).toBe(Code.INVALID_ARGUMENT);
    expect((err as BerthError).message).toContain('podId');
  });
});
