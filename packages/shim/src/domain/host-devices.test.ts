import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addDevices, hostDevices } from './host-devices.js';

// A /dev of our own (mknod needs root, which these tests run as): every kind of entry.
let dev: string;

beforeAll(() => {
  dev = mkdtempSync(join(tmpdir(), 'berth-dev-'));
  const mknod = (path: string, ...args: string[]) => execFileSync('mknod', [join(dev, path), ...args]);
  mknod('null', 'c', '1', '3');
  execFileSync('chmod', ['0666', join(dev, 'null')]);
  mknod('loop7', 'b', '7', '7');
  execFileSync('chown', ['12:34', join(dev, 'loop7')]);
  execFileSync('chmod', ['0640', join(dev, 'loop7')]);
  // Numbers past 8 (major) and 12 (minor) bits use dev_t's split encoding.
  mknod('big', 'c', '511', '1048575');
  mknod('console', 'c', '5', '1');
  mknod('initctl', 'p');
  writeFileSync(join(dev, 'regular'), 'x');
  symlinkSync('null', join(dev, 'link-to-null'));
  for (const d of ['pts', 'shm', 'fd', 'mqueue', '.udev', 'net']) mkdirSync(join(dev, d));
  mknod('pts/ptmx', 'c', '5', '2');
  mknod('shm/x', 'c', '1', '5');
  mknod('net/tun', 'c', '10', '200');
});

afterAll(() => rmSync(dev, { recursive: true, force: true }));

describe('hostDevices', () => {
  it('lists char and block nodes with their numbers, mode and owner, in subdirectories too', async () => {
    expect(await hostDevices(dev)).toEqual([
      { path: join(dev, 'big'), type: 'c', major: 511, minor: 1048575, fileMode: 0o644, uid: 0, gid: 0 },
      { path: join(dev, 'loop7'), type: 'b', major: 7, minor: 7, fileMode: 0o640, uid: 12, gid: 34 },
      { path: join(dev, 'net/tun'), type: 'c', major: 10, minor: 200, fileMode: 0o644, uid: 0, gid: 0 },
      { path: join(dev, 'null'), type: 'c', major: 1, minor: 3, fileMode: 0o666, uid: 0, gid: 0 },
    ]);
  });

  it("reads the host's /dev afresh: /dev/null is there as the kernel numbers it", async () => {
    const devs = await hostDevices();
    expect(devs.find((d) => d.path === '/dev/null')).toMatchObject({ type: 'c', major: 1, minor: 3 });
    expect(devs.some((d) => d.path.startsWith('/dev/pts/') || d.path === '/dev/console')).toBe(false);
  });

  it('fails naming the directory when /dev cannot be read', async () => {
    await expect(hostDevices(join(dev, 'absent'))).rejects.toThrow(
      `cannot list host devices in ${dev}/absent`,
    );
  });
});

describe('addDevices', () => {
  it("appends after the spec's own devices; a path the spec lists keeps the spec's entry", () => {
    const own = { path: '/dev/null', type: 'c', major: 1, minor: 3, fileMode: 0o600 };
    const spec: Record<string, unknown> = { linux: { devices: [own] } };
    const kmsg = {
      path: '/dev/kmsg',
      type: 'c' as const,
      major: 1,
      minor: 11,
      fileMode: 0o644,
      uid: 0,
      gid: 0,
    };
    addDevices(spec, [{ ...kmsg, path: '/dev/null', minor: 3 }, kmsg]);
    expect(spec.linux).toEqual({ devices: [own, kmsg] });
    const bare: Record<string, unknown> = {};
    addDevices(bare, [kmsg]);
    expect(bare).toEqual({ linux: { devices: [kmsg] } });
  });
});
