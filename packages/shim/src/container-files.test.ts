import { readFile, stat } from 'node:fs/promises';
import { hostname as osHostname } from 'node:os';
import { join } from 'node:path';
import { SHIM_FILE_SOURCE } from '@berth/api';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readCriStreams } from './cri-log.js';
import { bindRootfs, codeOf, makeSpec, newId, type ShimWorld, startWorld } from './testing/fixture.js';

const ns = 'default';
let w: ShimWorld;

beforeAll(async () => {
  w = await startWorld();
});
afterAll(async () => {
  await w?.close();
});

/** A spec whose /etc files are marked for the shim to write, as the task-service sends it. */
async function markedSpec(id: string, args: string[]) {
  const spec = await makeSpec(args, { cgroupsPath: `/berth-test/${w.node}/${id}` });
  const mounts = spec.mounts as Record<string, unknown>[];
  for (const [dest, name] of [
    ['/etc/hosts', 'hosts'],
    ['/etc/resolv.conf', 'resolv.conf'],
    ['/etc/hostname', 'hostname'],
  ]) {
    mounts.push({
      destination: dest,
      type: 'bind',
      source: `${SHIM_FILE_SOURCE}${name}`,
      options: ['rbind', 'rprivate', 'rw'],
    });
  }
  return spec;
}

async function runToExit(id: string) {
  await w.client.start({ namespace: ns, id });
  expect((await w.client.wait({ namespace: ns, id }, { timeoutMs: 20_000 })).exitCode).toBe(0);
  const st = await w.client.state({ namespace: ns, id });
  return { st, stdout: (await readCriStreams(st.logPath as string)).stdout };
}

describe("a container's /etc files, written by the shim on its own node", () => {
  it('writes hosts, resolv.conf and hostname under its state root and keeps the log across runs', async () => {
    const id = newId();
    const dir = join(w.stateRoot, 'containers', ns, id);
    const args = ['sh', '-c', 'hostname; cat /etc/hostname; grep web-1 /etc/hosts; cat /etc/resolv.conf'];
    const created = await w.client.create({
      namespace: ns,
      id,
      spec: await markedSpec(id, args),
      rootfs: bindRootfs(w.rootfs),
      files: { hostname: 'web-1', network: 'private', resolvConf: 'nameserver 192.0.2.53\n' },
    });
    expect(created.logPath).toBe(join(dir, 'container.log'));
    const { stdout } = await runToExit(id);
    expect(stdout).toBe('web-1\nweb-1\n127.0.1.1\tweb-1\nnameserver 192.0.2.53\n');
    expect(await readFile(join(dir, 'hostname'), 'utf8')).toBe('web-1\n');
    const config = JSON.parse(await readFile(join(created.bundle as string, 'config.json'), 'utf8'));
    const sources = (config.mounts as { source: string }[]).map((m) => m.source);
    expect(sources).toEqual(expect.arrayContaining([join(dir, 'hosts'), join(dir, 'resolv.conf')]));
    expect(sources.some((s) => s.startsWith(SHIM_FILE_SOURCE))).toBe(false);

    // Deleting the task keeps the container's files and log; a second run appends to the log.
    await w.client.delete({ namespace: ns, id });
    expect((await stat(join(dir, 'container.log'))).isFile()).toBe(true);
    await w.client.create({
      namespace: ns,
      id,
      spec: await markedSpec(id, ['echo', 'second']),
      rootfs: bindRootfs(w.rootfs),
      files: { hostname: 'web-1', network: 'private' },
    });
    const again = await runToExit(id);
    expect(again.stdout).toBe('web-1\nweb-1\n127.0.1.1\tweb-1\nnameserver 192.0.2.53\nsecond\n');

    // remove-files refuses while the task exists, then removes the directory.
    expect(await codeOf(w.client['remove-files']({ namespace: ns, id }))).toBe('FAILED_PRECONDITION');
    await w.client.delete({ namespace: ns, id });
    await w.client['remove-files']({ namespace: ns, id });
    expect(await codeOf(stat(dir))).toBe('ENOENT');
  });

  it("in the host network uses the node's host name and /etc/hosts", async () => {
    const id = newId();
    await w.client.create({
      namespace: ns,
      id,
      spec: await markedSpec(id, ['sh', '-c', 'hostname; env | grep ^HOSTNAME=; cat /etc/hosts']),
      rootfs: bindRootfs(w.rootfs),
      files: { network: 'host' },
    });
    const { stdout } = await runToExit(id);
    const name = osHostname();
    expect(stdout).toBe(`${name}\nHOSTNAME=${name}\n${await readFile('/etc/hosts', 'utf8').catch(() => '')}`);
    await w.client.delete({ namespace: ns, id });
    await w.client['remove-files']({ namespace: ns, id });
  });

  it('refuses a marked mount without files, and leaves nothing behind', async () => {
    const id = newId();
    const r = w.client.create({
      namespace: ns,
      id,
      spec: await markedSpec(id, ['true']),
      rootfs: bindRootfs(w.rootfs),
    });
    expect(await codeOf(r)).toBe('INVALID_ARGUMENT');
    expect(await codeOf(w.client.state({ namespace: ns, id }))).toBe('NOT_FOUND');
    expect(await codeOf(stat(join(w.stateRoot, 'containers', ns, id)))).toBe('ENOENT');
  });
});
