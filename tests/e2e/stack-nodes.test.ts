import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { alive, type Stack, waitFor } from '../harness/stack.js';
import { startUpFixture, type UpFixture } from './up-fixture.js';

// Two nodes (two `berth up`, each with its own node id and state root) share one NATS and one
// Redis: host-local services keep to their node (subjects and keys carry the node id), the
// scalable ones serve both, and a container runs on the node that asked for it. Each node has its
// own state root, as separate machines would: a container's files must be where it runs.
let f: UpFixture;
let a: Stack;
let b: Stack;
let image: string;

beforeAll(async () => {
  f = await startUpFixture({ nodes: [{}, {}], shared: true });
  [a, b] = f.stacks as [Stack, Stack];
  image = f.image;
}, 120_000);
afterAll(() => f?.stop(), 60_000);

describe('two nodes on one NATS and one Redis', () => {
  it('berth status on either node sees every service of both, healthy', async () => {
    for (const st of [a, b]) {
      const { code, json } = await st.status();
      expect(code).toBe(0);
      for (const svc of json.services) {
        const nodes = svc.instances.map((i) => i.node).sort();
        expect(nodes, svc.service).toEqual([a.nodeId, b.nodeId].sort());
        expect(svc.instances.every((i) => i.health === 'healthy')).toBe(true);
      }
    }
  });

  it('keeps images per node and runs each container on the node that asked', async () => {
    const pull = await a.berth('pull', image);
    expect(pull.code, pull.stderr).toBe(0);
    expect((await a.berth('images', '-q')).stdout.trim()).not.toBe('');
    // Node b's image store is its own: the image pulled on a is not there.
    expect((await b.berth('images', '-q')).stdout.trim()).toBe('');

    const ra = await a.berth('run', '-d', '--name', 'on-a', image, 'sleep', '300');
    expect(ra.code, ra.stderr).toBe(0);
    expect(ra.stderr).not.toContain('Unable to find image');
    const rb = await b.berth('run', '-d', '--name', 'on-b', image, 'sleep', '300');
    expect(rb.code, rb.stderr).toBe(0);
    expect(rb.stderr).toContain('Unable to find image');

    const inspect = async (st: Stack, ref: string) => JSON.parse((await st.berth('inspect', ref)).stdout)[0];
    const ia = await inspect(b, 'on-a');
    const ib = await inspect(a, 'on-b');
    expect(ia.container.node).toBe(a.nodeId);
    expect(ib.container.node).toBe(b.nodeId);

    // Either node's CLI reaches a container on the other, through that node's shim.
    expect((await b.berth('exec', 'on-a', 'hostname')).stdout).toBe(`${ia.container.id.slice(0, 12)}\n`);
    expect((await a.berth('ps', '-q', '--all-nodes')).stdout.trim().split('\n').sort()).toEqual(
      [ia.container.id.slice(0, 12), ib.container.id.slice(0, 12)].sort(),
    );
  });

  it('one node going down leaves the other serving its containers', async () => {
    const down = await a.berth('down');
    expect(down.code, down.stderr).toBe(0);
    const { code, json } = await b.status();
    expect(code).toBe(0);
    for (const svc of json.services) expect(svc.instances.map((i) => i.node)).toEqual([b.nodeId]);
    expect((await b.berth('exec', 'on-b', 'echo', 'still here')).stdout).toBe('still here\n');
    // The other node's container cannot be reached while its shim is down: a clear refusal.
    const r = await b.berth('exec', 'on-a', 'true');
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/shim/);
    const up = await a.berth('up');
    expect(up.code, up.stderr).toBe(0);
  });

  it("writes a container's /etc files and log on its node, whichever task-service replica made it", async () => {
    await a.waitForStatus((s) => s.ok);
    // Leave node b's task-service the only replica: kill a's supervisor (so nothing restarts),
    // then a's task-service. a's shim, image and snapshot services keep running.
    const st = a.state();
    const ts = st?.children.find((c) => c.name === 'task-service');
    expect(ts?.pid).toBeTruthy();
    process.kill(st?.pid as number, 'SIGKILL');
    await waitFor('a supervisor to die', () => !alive(st?.pid as number));
    process.kill(ts?.pid as number, 'SIGKILL');
    await waitFor("a's task-service to die", () => !alive(ts?.pid as number));
    await b.waitForStatus((s) => {
      const nodes = s.services.find((x) => x.service === 'task-service')?.instances.map((i) => i.node);
      return nodes?.length === 1 && nodes[0] === b.nodeId;
    });

    // Asked on node a, so it runs on a; only b's replica can have handled the request.
    const r = await a.berth(
      'run',
      '-d',
      '--name',
      'files-on-a',
      '--dns',
      '192.0.2.53',
      image,
      'sh',
      '-c',
      'cat /etc/hostname /etc/resolv.conf; grep "$(hostname)" /etc/hosts; sleep 300',
    );
    expect(r.code, r.stderr).toBe(0);
    const info = JSON.parse((await b.berth('inspect', 'files-on-a')).stdout)[0];
    expect(info.container.node).toBe(a.nodeId);
    const { id, namespace } = info.container as { id: string; namespace: string };
    const onA = join(a.stateRoot, 'containers', namespace, id);
    expect(existsSync(join(b.stateRoot, 'containers', namespace, id))).toBe(false);
    expect(readFileSync(join(onA, 'hostname'), 'utf8')).toBe(`${id.slice(0, 12)}\n`);
    expect(readFileSync(join(onA, 'resolv.conf'), 'utf8')).toBe('nameserver 192.0.2.53\n');
    expect(info.task.logPath).toBe(join(onA, 'container.log'));
    await waitFor('the output in the log on a', () =>
      readFileSync(join(onA, 'container.log'), 'utf8').includes(`127.0.1.1\t${id.slice(0, 12)}`),
    );
    const logs = await a.berth('logs', 'files-on-a');
    expect(logs.stdout).toBe(`${id.slice(0, 12)}\nnameserver 192.0.2.53\n127.0.1.1\t${id.slice(0, 12)}\n`);
    expect((await b.berth('exec', 'files-on-a', 'cat', '/etc/hostname')).stdout).toBe(`${id.slice(0, 12)}\n`);

    // Removing it through b's replica removes the files on a, through a's shim.
    const rm = await b.berth('rm', '-f', 'files-on-a');
    expect(rm.code, rm.stderr).toBe(0);
    expect(existsSync(onA)).toBe(false);
  });
});
