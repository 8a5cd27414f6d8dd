import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { BerthError, Code } from '@berth/api';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { filesOf, hangPlugin, type NetWorld, netWorld, podId, present } from '../testing/network.js';
import { NetworkManager } from './manager.js';

// Networks here fail on purpose; their ranges never reach a working pod.
let w: NetWorld;

beforeAll(async () => {
  w = await netWorld('err');
});
afterAll(async () => {
  await w?.close();
});

/** A manager over a conf dir of its own holding `files` (name -> content). */
async function managerWith(
  tag: string,
  files: Record<string, string>,
  extra: { pluginDirs?: string[]; pluginTimeoutMs?: number } = {},
) {
  const confDir = join(w.dir, tag);
  await mkdir(confDir, { recursive: true });
  for (const [name, text] of Object.entries(files)) await writeFile(join(confDir, name), text);
  return { confDir, m: new NetworkManager({ layout: w.layout, confDir, ...extra }) };
}

function bridgeList(name: string, plugins: object[] = []) {
  const ipam = { type: 'host-local', dataDir: w.dataDir, ranges: [[{ subnet: '10.199.3.0/24' }]] };
  return JSON.stringify({
    cniVersion: '1.0.0',
    name,
    plugins: [{ type: 'bridge', bridge: w.bridge, ipam }, ...plugins],
  });
}

/** The pod left nothing: no namespace file, no record. */
async function nothingLeft(m: NetworkManager, id: string) {
  expect(await present(m.netnsPath(id))).toBe(false);
  expect(await filesOf(m.paths.stateDir)).not.toContain(`${id}.json`);
}

describe('setup errors name what is wrong and leave nothing behind', () => {
  it('a conflist that is not JSON names the file', async () => {
    const { confDir, m } = await managerWith('bad-json', {
      '00-bad.conflist': '{ "cniVersion": ',
      '10-ok.conflist': bridgeList('ok'),
    });
    const id = podId('bad');
    const err = await m.setup(id).catch((e: BerthError) => e);
    expect(err).toBeInstanceOf(BerthError);
    expect((err as BerthError).code).toBe(Code.INVALID_ARGUMENT);
    expect((err as BerthError).message).toContain(
      `CNI config "${join(confDir, '00-bad.conflist')}" is not JSON`,
    );
    await nothingLeft(m, id);
  });

  it('a conflist without plugins names the file and the field', async () => {
    const { confDir, m } = await managerWith('no-plugins', {
      'a.conflist': JSON.stringify({ cniVersion: '1.0.0', name: 'x', plugins: [] }),
    });
    await expect(m.setup(podId('np'))).rejects.toThrow(
      `CNI config "${join(confDir, 'a.conflist')}": field plugins:`,
    );
    const [row] = await m.listNetworks();
    expect(row?.error).toContain('field plugins');
  });

  it('a missing plugin names the plugin and the directories searched', async () => {
    const { m } = await managerWith(
      'missing',
      { 'a.conflist': bridgeList('missing', [{ type: 'nosuchplugin' }]) },
      { pluginDirs: ['/usr/lib/cni', '/nonexistent/cni'] },
    );
    const id = podId('mp');
    const err = (await m.setup(id).catch((e: BerthError) => e)) as BerthError;
    expect(err.code).toBe(Code.FAILED_PRECONDITION);
    expect(err.message).toContain('CNI plugin "nosuchplugin" not found in /usr/lib/cni, /nonexistent/cni');
    await nothingLeft(m, id);
    // Every plugin is looked up before the first runs: the bridge never took a lease.
    expect(await filesOf(join(w.dataDir, 'missing'))).toEqual([]);
  });

  it("a plugin's JSON error becomes an error naming the plugin, its CNI code and message", async () => {
    const list = {
      cniVersion: '1.0.0',
      name: 'badipam',
      plugins: [
        {
          type: 'bridge',
          bridge: w.bridge,
          ipam: { type: 'host-local', ranges: [[{ subnet: 'not-a-cidr' }]] },
        },
      ],
    };
    const { m } = await managerWith('cni-error', { 'a.conflist': JSON.stringify(list) });
    const id = podId('ce');
    const err = (await m.setup(id).catch((e: BerthError) => e)) as BerthError;
    expect(err.message).toMatch(
      /^CNI plugin "bridge" ADD \(network "badipam", container "ce-[0-9a-f]+"\) failed \(CNI error \d+\): .*not-a-cidr/,
    );
    // DEL with the same config fails the same way: the pod stays recorded, and says so.
    expect(err.message).toContain(`its cleanup (CNI DEL) failed too, so pod "${id}" stays recorded`);
    await expect(m.teardown(id)).rejects.toThrow(/CNI plugin "bridge" DEL .*not-a-cidr/);
    expect(await present(m.netnsPath(id))).toBe(true);
    const forced = await m.teardown(id, { force: true });
    expect(forced.errors[0]).toContain('not-a-cidr');
    await nothingLeft(m, id);
  });

  it('a hung plugin is killed after the timeout and its pod is cleaned up', async () => {
    const pluginDir = join(w.dir, 'plugins');
    await mkdir(pluginDir, { recursive: true });
    const marker = join(w.dir, 'hang-started');
    await hangPlugin(pluginDir, marker);
    const { m } = await managerWith(
      'hang',
      { 'a.conflist': bridgeList('hang', [{ type: 'hang' }]) },
      { pluginDirs: [pluginDir, '/usr/lib/cni'], pluginTimeoutMs: 1500 },
    );
    const id = podId('hang');
    const started = Date.now();
    const err = (await m.setup(id).catch((e: BerthError) => e)) as BerthError;
    expect(err.code).toBe(Code.DEADLINE_EXCEEDED);
    expect(err.message).toContain('CNI plugin "hang" ADD (network "hang"');
    expect(err.message).toContain('did not finish within 1500 ms and was killed');
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(await present(marker)).toBe(true);
    await nothingLeft(m, id);
    expect(await filesOf(join(w.dataDir, 'hang'))).toEqual(['last_reserved_ip.0', 'lock']);
  });

  it('a corrupt record is DATA_LOSS naming the file; a forced teardown gets past it', async () => {
    const { m } = await managerWith('corrupt', { 'a.conflist': bridgeList('corrupt') });
    const id = podId('cr');
    await mkdir(m.paths.stateDir, { recursive: true });
    const file = join(m.paths.stateDir, `${id}.json`);
    await writeFile(file, '{"version":1,"podId":');
    const err = (await m.teardown(id).catch((e: BerthError) => e)) as BerthError;
    expect(err.code).toBe(Code.DATA_LOSS);
    expect(err.message).toContain(`network record "${file}" is unreadable`);
    // Recovery reports it and goes on; the namespace of a pod without a readable record stays.
    const report = await m.recover();
    expect(report.failed).toEqual([{ podId: id, error: err.message }]);
    expect((await m.teardown(id, { force: true })).errors[0]).toContain('is unreadable');
    await nothingLeft(m, id);
  });

  it('rejects bad pod ids and port mappings with INVALID_ARGUMENT naming the field', async () => {
    const { m } = await managerWith('args', { 'a.conflist': bridgeList('args') });
    await expect(m.setup('../etc')).rejects.toThrow('invalid podId "../etc"');
    await expect(
      m.setup('ok', { portMappings: [{ hostPort: 0, containerPort: 80, protocol: 'tcp' }] }),
    ).rejects.toThrow('invalid portMappings[0].hostPort 0');
    await expect(m.teardown('a/b')).rejects.toThrow('invalid podId "a/b"');
  });
});
