import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { alive, type Stack, waitFor } from '../harness/stack.js';
import { startUpFixture, type UpFixture } from './up-fixture.js';

// Facts of a node (the users in a container's rootfs, the capabilities its kernel lets runc
// grant) are resolved by that node's shim, not by the task-service replica that took the request.
// Two nodes share one NATS and one Redis; node b runs with CAP_NET_RAW dropped from its
// bounding set (as a hardened machine would) and, for these tests, no task-service: every
// container on b is made by a's replica, whose own bounding set is full.
let f: UpFixture;
let a: Stack;
let b: Stack;
let image: string;

/** containerd's default capability set, by kernel bit (what a full node grants by default). */
const DEFAULT_BITS = [0, 1, 3, 4, 5, 6, 7, 8, 10, 13, 18, 27, 29, 31];
const CAP_NET_RAW = 13;

/** The CapBnd mask of a process, as a number (the first 32 capabilities suffice here). */
const capBnd = (status: string) => {
  const m = /^CapBnd:\s*([0-9a-f]+)$/m.exec(status);
  if (!m?.[1]) throw new Error(`no CapBnd in:\n${status}`);
  return BigInt(`0x${m[1]}`);
};

beforeAll(async () => {
  // b: `berth up` under setpriv, so its whole process tree lacks CAP_NET_RAW in its bounding set.
  f = await startUpFixture({
    nodes: [{}, { upWrapper: ['setpriv', '--bounding-set', '-net_raw'] }],
    shared: true,
  });
  [a, b] = f.stacks as [Stack, Stack];
  image = f.image;

  // Leave a's task-service the only replica: kill b's supervisor (so nothing restarts it), then
  // b's task-service. b's shim, image and snapshot services keep running.
  await b.waitForStatus((s) => s.ok);
  const st = b.state();
  const ts = st?.children.find((c) => c.name === 'task-service');
  if (!st || !ts?.pid) throw new Error("node b's task-service is not running");
  process.kill(st.pid, 'SIGKILL');
  await waitFor('b supervisor to die', () => !alive(st.pid));
  process.kill(ts.pid, 'SIGKILL');
  await waitFor("b's task-service to die", () => !alive(ts.pid as number));
  await a.waitForStatus((s) => {
    const nodes = s.services.find((x) => x.service === 'task-service')?.instances.map((i) => i.node);
    return nodes?.length === 1 && nodes[0] === a.nodeId;
  });
  const pull = await b.berth('pull', image);
  if (pull.code !== 0) throw new Error(`pull on b failed: ${pull.stderr}`);
}, 180_000);

afterAll(() => f?.stop(), 60_000);

describe("facts of a container's node are resolved on that node", () => {
  it("runs on b as a user named in b's image, with b's default capabilities", async () => {
    const shimB = b.state()?.children.find((c) => c.name === 'shim');
    expect(shimB?.pid).toBeTruthy();
    const nodeB = capBnd(readFileSync(`/proc/${shimB?.pid}/status`, 'utf8'));
    expect((nodeB >> BigInt(CAP_NET_RAW)) & 1n).toBe(0n);
    const defaults = DEFAULT_BITS.reduce((m, bit) => m | (1n << BigInt(bit)), 0n);

    const r = await b.berth(
      'run',
      '--name',
      'facts-on-b',
      '-u',
      'www',
      image,
      'sh',
      '-c',
      'id -u; id -G; echo $HOME; grep CapBnd /proc/self/status',
    );
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const [uid, groups, home, bnd] = r.stdout.split('\n');
    expect([uid, groups, home]).toEqual(['33', '33 50', '/home/www']);
    // b's default set: containerd's defaults as far as b's bounding set has them (no NET_RAW).
    expect(capBnd(bnd ?? '')).toBe(defaults & nodeB);

    // The stored spec keeps what b resolved (inspect and CRI status read it).
    const info = JSON.parse((await a.berth('inspect', 'facts-on-b')).stdout)[0];
    expect(info.container.node).toBe(b.nodeId);
    expect(info.container.spec.process.user).toEqual({ uid: 33, gid: 33, additionalGids: [33, 50] });
    expect(info.container.spec.process.capabilities.bounding).not.toContain('CAP_NET_RAW');
    expect((await b.berth('rm', 'facts-on-b')).code).toBe(0);
  });

  it('execs as a user named in the image on b, and refuses unknown names and caps b lacks', async () => {
    const d = await b.berth('run', '-d', '--name', 'exec-on-b', image, 'sleep', '300');
    expect(d.code, d.stderr).toBe(0);
    const ex = await a.berth('exec', '-u', 'www:staff', 'exec-on-b', 'sh', '-c', 'id -u; id -g; echo $HOME');
    expect(ex.stdout, ex.stderr).toBe('33\n50\n/home/www\n');
    const root = await a.berth('exec', 'exec-on-b', 'sh', '-c', 'id -u; echo $HOME');
    expect(root.stdout).toBe('0\n/root\n');

    const ghost = await b.berth('run', '--rm', '-u', 'ghost', image, 'true');
    expect(ghost.code).not.toBe(0);
    expect(ghost.stderr).toContain('user "ghost" not found in /etc/passwd');
    const exGhost = await a.berth('exec', '-u', 'ghost', 'exec-on-b', 'true');
    expect(exGhost.code).not.toBe(0);
    expect(exGhost.stderr).toContain('user "ghost" not found in /etc/passwd');

    const netRaw = await b.berth('run', '--rm', '--cap-add', 'NET_RAW', image, 'true');
    expect(netRaw.code).not.toBe(0);
    expect(netRaw.stderr).toContain(`capability "CAP_NET_RAW" is not available on node "${b.nodeId}"`);
    // On a, whose bounding set is full, the same request is granted.
    const onA = await a.berth(
      'run',
      '--rm',
      '--cap-add',
      'NET_RAW',
      image,
      'grep',
      'CapBnd',
      '/proc/self/status',
    );
    expect(onA.code, onA.stderr).toBe(0);
    expect((capBnd(onA.stdout) >> BigInt(CAP_NET_RAW)) & 1n).toBe(1n);
    expect((await b.berth('ps', '-aq', '--filter', 'status=created')).stdout).toBe('');
  });
});
