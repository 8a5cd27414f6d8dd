import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { BerthError, Code } from '@berth/api';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ShimWorld, startWorld } from './testing/fixture.js';
import { fetchHost, podId, serveIn } from './testing/network.js';

const exec = promisify(execFile);
const bridge = `bs${randomBytes(4).toString('hex')}`;
let w: ShimWorld;
let confDir: string;
let dataDir: string;

beforeAll(async () => {
  const base = join('/tmp', `berth-netsvc-${randomBytes(4).toString('hex')}`);
  confDir = join(base, 'net.d');
  dataDir = join(base, 'ipam');
  w = await startWorld({
    shim: {
      cniConfDir: confDir,
      cniBridge: bridge,
      cniSubnet: '10.231.4.0/24',
      cniDataDir: dataDir,
      cniNetwork: bridge,
    },
  });
});
afterAll(async () => {
  await w?.close();
  await exec('ip', ['link', 'del', bridge]).catch(() => undefined);
  await exec('rm', ['-rf', join(confDir, '..')]).catch(() => undefined);
});

describe('shim network operations over NATS', () => {
  it('lists the default network, sets a pod up with a published port, keeps it across an agent crash, tears it down', async () => {
    const list = await w.client['network-list']({});
    expect(list.networks).toEqual([
      {
        name: bridge,
        cniVersion: '1.0.0',
        plugins: ['bridge', 'portmap'],
        subnets: ['10.231.4.0/24'],
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
    expect(net.ips[0]?.address).toMatch(/^10\.231\.4\.\d+\/24$/);
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

  it('rejects a bad pod id with INVALID_ARGUMENT naming the field', async () => {
    const err = await w.client['network-setup']({ podId: '../x', portMappings: [] }).catch(
      (e: BerthError) => e,
    );
    expect((err as BerthError).code).toBe(Code.INVALID_ARGUMENT);
    expect((err as BerthError).message).toContain('podId');
  });
});
