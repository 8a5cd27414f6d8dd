// One suite, two implementations of the shim interface: an agent in this process called through
// its handlers (localClient), and the agent process (dist/main.js) over a real nats-server. Each
// runs real runc under conmon on its own state root; both must give the same states, exits and
// error codes.
import { join } from 'node:path';
import { ShimApi } from '@berth/api';
import { type Client, collectAll, localClient, publishEvent } from '@berth/kit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NetworkManager } from './network/manager.js';
import { createHandlers } from './service.js';
import {
  bindRootfs,
  codeOf,
  type LocalAgent,
  makeSpec,
  newId,
  type ShimWorld,
  startLocalAgent,
  startWorld,
} from './testing/fixture.js';

const ns = 'default';
let w: ShimWorld;
/** The agent in this process, beside the world's agent process. */
let la: LocalAgent;
let local: Client<typeof ShimApi>;
const localNode = `shimconf-${Math.random().toString(36).slice(2, 10)}`;

beforeAll(async () => {
  w = await startWorld();
  la = await startLocalAgent(w, localNode, { publish: (t, n, e) => publishEvent(w.nc, t, n, e) });
  const network = new NetworkManager({
    layout: la.layout,
    confDir: join(la.layout.stateRoot, 'cni'),
    installDefault: false,
  });
  local = localClient(ShimApi, createHandlers(la.agent, network));
});
afterAll(async () => {
  await la?.close();
  await w?.close();
});

const impls: [string, () => Client<typeof ShimApi>, () => string][] = [
  ['in-process', () => local, () => la.rootfs],
  ['over NATS', () => w.client, () => w.rootfs],
];

describe.each(impls)('shim conformance: %s', (_label, make, rootfsOf) => {
  async function create(c: Client<typeof ShimApi>, args: string[]) {
    const id = newId();
    const spec = await makeSpec(args, { cgroupsPath: `/berth-test/conf/${id}` });
    const st = await c.create({ namespace: ns, id, spec, rootfs: bindRootfs(rootfsOf()) });
    return { id, st };
  }

  it('creates, starts, signals, waits and deletes a task; execs in it', async () => {
    const c = make();
    const { id, st } = await create(c, ['sh', '-c', 'trap "exit 3" TERM; while :; do sleep 0.1; done']);
    expect(st.status).toBe('created');
    expect((await c.start({ namespace: ns, id })).status).toBe('running');
    await c.exec({
      namespace: ns,
      id,
      execId: 'e1',
      process: { args: ['sh', '-c', 'exit 5'], env: ['PATH=/bin'], cwd: '/' },
    });
    await c.start({ namespace: ns, id, execId: 'e1' });
    expect(await c.wait({ namespace: ns, id, execId: 'e1' })).toMatchObject({ exitCode: 5 });
    await c.delete({ namespace: ns, id, execId: 'e1' });
    expect((await c.kill({ namespace: ns, id, signal: 'SIGTERM' })).delivered).toBe(true);
    expect(await c.wait({ namespace: ns, id })).toMatchObject({ exitCode: 3 });
    expect((await c.state({ namespace: ns, id })).status).toBe('stopped');
    expect((await c.kill({ namespace: ns, id, signal: 'SIGKILL' })).delivered).toBe(false);
    expect(await c.delete({ namespace: ns, id })).toMatchObject({ status: 'stopped', exitCode: 3 });
  });

  it('creates and starts a task in one call with start; a process that exits at once is waited for', async () => {
    const c = make();
    const id = newId();
    const spec = await makeSpec(['sh', '-c', 'sleep 0.3; exit 4'], { cgroupsPath: `/berth-test/conf/${id}` });
    const st = await c.create({ namespace: ns, id, spec, rootfs: bindRootfs(rootfsOf()), start: true });
    expect(st).toMatchObject({ id, status: 'running' });
    expect(st.pid).toBeGreaterThan(0);
    expect(Date.parse(st.startedAt ?? '')).toBeGreaterThan(0);
    expect(await codeOf(c.start({ namespace: ns, id }))).toBe('FAILED_PRECONDITION');
    expect(await c.wait({ namespace: ns, id })).toMatchObject({ exitCode: 4 });
    await c.delete({ namespace: ns, id });

    const quick = newId();
    const exits = await makeSpec(['sh', '-c', 'exit 6'], { cgroupsPath: `/berth-test/conf/${quick}` });
    const q = await c.create({
      namespace: ns,
      id: quick,
      spec: exits,
      rootfs: bindRootfs(rootfsOf()),
      start: true,
    });
    // Started, and perhaps already recorded as exited by the time the reply is built.
    expect(['running', 'stopped']).toContain(q.status);
    expect(await c.wait({ namespace: ns, id: quick })).toMatchObject({ exitCode: 6 });
    expect(await c.delete({ namespace: ns, id: quick })).toMatchObject({ status: 'stopped', exitCode: 6 });
  });

  it('answers the same error codes', async () => {
    const c = make();
    expect(await codeOf(c.state({ namespace: ns, id: 'nope' }))).toBe('NOT_FOUND');
    expect(await codeOf(c.state({ namespace: '../x', id: 'nope' }))).toBe('INVALID_ARGUMENT');
    const { id } = await create(c, ['sleep', '30']);
    await c.start({ namespace: ns, id });
    expect(await codeOf(c.delete({ namespace: ns, id }))).toBe('FAILED_PRECONDITION');
    expect(await codeOf(c.kill({ namespace: ns, id, signal: 'SIGFOO' }))).toBe('INVALID_ARGUMENT');
    const again = await makeSpec(['sleep', '1'], { cgroupsPath: `/berth-test/conf/${id}` });
    expect(await codeOf(c.create({ namespace: ns, id, spec: again, rootfs: bindRootfs(rootfsOf()) }))).toBe(
      'ALREADY_EXISTS',
    );
    await c.kill({ namespace: ns, id, signal: 'SIGKILL' });
    await c.wait({ namespace: ns, id });
    await c.delete({ namespace: ns, id });
  });

  it('pages the list of tasks by namespace and id, each once', async () => {
    const c = make();
    const made: string[] = [];
    for (let n = 0; n < 5; n++) made.push((await create(c, ['sleep', '30'])).id);
    const first = await c.list({ namespace: ns, limit: 2 });
    expect(first.tasks).toHaveLength(2);
    expect(first.nextCursor).toBeTypeOf('string');
    const all = await collectAll(c.list, { namespace: ns, limit: 2 }, 'tasks');
    const ids = all.map((t) => t.id);
    expect(new Set(ids).size).toBe(ids.length);
    expect(ids.filter((i) => made.includes(i))).toEqual([...made].sort());
    expect(await codeOf(c.list({ cursor: 'bogus' }))).toBe('INVALID_ARGUMENT');
    for (const id of made) await c.delete({ namespace: ns, id });
  });
});
