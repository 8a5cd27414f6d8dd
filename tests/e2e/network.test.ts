import { existsSync, readdirSync } from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ShimApi, TaskApi } from '@berth/api';
import { call } from '@berth/kit';
import { testCniNetwork } from '@berth/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freeLowPort } from '../harness/ports.js';
import { type ContainerStack, startContainerStack, until } from './containers-stack.js';

// `berth run` on a real CNI network (bridge + host-local + portmap from /usr/lib/cni) set up by the
// node's shim, on the stack's private conf dir, bridge, subnet and lease store.
let IMAGE = 'berth.test/busybox:latest';
let s: ContainerStack;

beforeAll(async () => {
  s = await startContainerStack();
  IMAGE = (await s.importBusybox(IMAGE)).name;
}, 120_000);
afterAll(async () => s?.stop(), 60_000);

const run = (...args: string[]) => s.berth(args);
async function ok(...args: string[]): Promise<string> {
  const r = await run(...args);
  expect(r.code, `berth ${args.join(' ')}: ${r.stderr}`).toBe(0);
  return r.stdout;
}
async function ipOf(ref: string): Promise<string> {
  const [info] = JSON.parse(await ok('inspect', ref));
  return info.container.network?.ips?.[0] ?? '';
}
/** The host-local leases of the stack's network (addresses only, not its lock files). */
function leases(): string[] {
  const dir = s.cni.leaseDir;
  return existsSync(dir) ? readdirSync(dir).filter((f) => /^\d+\.\d+\.\d+\.\d+$/.test(f)) : [];
}
function inSubnet(ip: string, subnet: string): boolean {
  const n = (a: string) => a.split('.').reduce((x, o) => x * 256 + Number(o), 0);
  const [base = '', bits = '32'] = subnet.split('/');
  const size = 2 ** (32 - Number(bits));
  return Math.floor(n(ip) / size) === Math.floor(n(base) / size);
}
const HTTPD = 'mkdir -p /tmp/w && echo served-by-web > /tmp/w/index.html && exec httpd -f -p 80 -h /tmp/w';

describe('berth run networking', () => {
  let webIp: string;

  it('lists the network with berth network ls', async () => {
    const out = await ok('network', 'ls');
    const lines = out.trim().split('\n');
    expect(lines[0]).toMatch(/^NAME\s+PLUGINS\s+SUBNET\s+FILE$/);
    expect(lines[1]).toMatch(
      new RegExp(`^berth \\(default\\)\\s+bridge,portmap\\s+${s.cni.subnet.replace(/\./g, '\\.')}\\s+`),
    );
    expect(lines[1]).toContain(join(s.cni.settings.cniConfDir, '10-berth.conflist'));
    expect(await ok('network', 'ls', '-q')).toBe('berth\n');
  });

  it('gives a default run an eth0 with an address on the bridge', async () => {
    const out = await ok('run', '--rm', IMAGE, 'ip', '-4', '-o', 'addr', 'show', 'eth0');
    const ip = /inet (\d+\.\d+\.\d+\.\d+)\//.exec(out)?.[1] ?? '';
    expect(inSubnet(ip, s.cni.subnet), `${out} in ${s.cni.subnet}`).toBe(true);
    // --rm removed the container, and right after (in the task-service's background) its lease.
    await until('its lease to be released', () => !leases().includes(ip));
  });

  it('publishes -p 127.0.0.1:HOSTPORT:80 on the host', async () => {
    const port = await freeLowPort();
    await ok('run', '-d', '--name', 'web', '-p', `127.0.0.1:${port}:80`, IMAGE, 'sh', '-c', HTTPD);
    webIp = await ipOf('web');
    expect(inSubnet(webIp, s.cni.subnet)).toBe(true);
    expect(leases()).toContain(webIp);
    const body = await until('the published port to answer', async () => {
      const r = await fetch(`http://127.0.0.1:${port}/`).catch(() => undefined);
      return r?.ok ? r.text() : undefined;
    });
    expect(body).toBe('served-by-web\n');
  });

  it('lets two containers reach each other by IP', async () => {
    // No -T: Debian's busybox-static wget crashes (SIGSEGV) with a timeout.
    const out = await ok('run', '--rm', IMAGE, 'wget', '-q', '-O', '-', `http://${webIp}:80/`);
    expect(out).toBe('served-by-web\n');
  });

  it('gives --network none only lo, and --network host the host network', async () => {
    const none = await ok('run', '--rm', '--network', 'none', IMAGE, 'ip', '-o', 'link');
    expect(
      none
        .trim()
        .split('\n')
        .map((l) => l.split(':')[1]?.trim()),
    ).toEqual(['lo']);
    // Only web's lease: the wget run's is released in the background of its --rm.
    await until('earlier --rm runs to be freed', () => leases().length === 1);
    const before = leases().length;
    const host = await ok(
      'run',
      '--rm',
      '--network',
      'host',
      IMAGE,
      'ip',
      '-o',
      'link',
      'show',
      s.cni.bridge,
    );
    expect(host).toContain(s.cni.bridge);
    expect(leases()).toHaveLength(before);
    const bad = await run('run', '--rm', '--network', 'none', '-p', '8080:80', IMAGE, 'true');
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toContain('-p publishes ports only with --network bridge, not none');
  });

  it('releases the lease and the namespace on rm, also after the container died', async () => {
    await ok('kill', 'web');
    await until('web to exit', async () => (await ipOf('web')) && (await ok('ps', '-q')) === '');
    await ok('rm', 'web');
    expect(leases()).not.toContain(webIp);
    const netns = join(s.runRoot, 'netns');
    expect(existsSync(netns) ? readdirSync(netns) : []).toEqual([]);
    expect(leases()).toEqual([]);
  });

  it('a create whose image is missing leaves no network: the setup beside its snapshot is undone', async () => {
    const create = call(
      s.nc,
      TaskApi,
      'create-container',
      { image: 'berth.test/no-such-image:latest', network: 'bridge', name: 'no-image' },
      { namespace: 'default', timeoutMs: 30_000 },
    );
    await expect(create).rejects.toThrow(/no-such-image/);
    const pods = await call(s.nc, ShimApi, 'network-list', {}, { node: s.node, timeoutMs: 5_000 });
    expect(pods.pods).toEqual([]);
    const netns = join(s.runRoot, 'netns');
    expect(existsSync(netns) ? readdirSync(netns) : []).toEqual([]);
    expect(leases()).toEqual([]);
    expect(await ok('ps', '-aq')).toBe('');
  });

  it("runs a container on a cluster's CNI config once it is beside berth's default, and ls says so", async () => {
    // A second bridge of its own (bridge, subnet, leases) in the shim's conf dir, named to sort
    // after 10-berth.conflist as 10-calico, 10-flannel and 10-kindnet do.
    const other = testCniNetwork(s.root, 'cluster');
    const file = join(s.cni.settings.cniConfDir, '10-cluster.conflist');
    const ipam = {
      type: 'host-local',
      dataDir: other.settings.cniDataDir,
      ranges: [[{ subnet: other.subnet }]],
    };
    const list = {
      cniVersion: '1.0.0',
      name: 'cluster',
      plugins: [{ type: 'bridge', bridge: other.bridge, isGateway: true, ipam }],
    };
    await writeFile(file, JSON.stringify(list));
    try {
      const ls = (await ok('network', 'ls')).trim().split('\n');
      expect(ls[1]).toMatch(/^berth\s+bridge,portmap\s/);
      expect(ls[2]).toMatch(
        new RegExp(`^cluster \\(default\\)\\s+bridge\\s+${other.subnet.replace(/\./g, '\\.')}\\s+`),
      );
      const out = await ok('run', '--rm', IMAGE, 'ip', '-4', '-o', 'addr', 'show', 'eth0');
      const ip = /inet (\d+\.\d+\.\d+\.\d+)\//.exec(out)?.[1] ?? '';
      expect(inSubnet(ip, other.subnet), `${out} in ${other.subnet}`).toBe(true);
      // Its DEL ran the cluster network's chain, the one its ADD ran.
      await until('its lease to be released', () => !readdirSync(other.leaseDir).includes(ip));
      await rm(file);
      expect((await ok('network', 'ls')).trim().split('\n')[1]).toMatch(/^berth \(default\)\s/);
      const back = await ok('run', '--rm', IMAGE, 'ip', '-4', '-o', 'addr', 'show', 'eth0');
      expect(inSubnet(/inet (\d+\.\d+\.\d+\.\d+)\//.exec(back)?.[1] ?? '', s.cni.subnet), back).toBe(true);
    } finally {
      await rm(file, { force: true });
      await other.close();
    }
  });
});
