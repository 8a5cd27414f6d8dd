// A container removed in the background whose node cannot free it for good (runc cannot delete
// its task: the state.json under the shim's real runc root broken by hand) is not retried and
// logged every reconcile pass forever: the reconcile tries it after 1, 2, 4 ... passes (at most
// 5 minutes' worth of the interval), logs each try once, and frees it once runc can. A shim that
// is down is not such a failure: the containers it holds are tried again every pass, as before.
// The stack's shim, snapshot-service and runc are real; the task-service's domain runs in this
// process (the stack's replica is stopped), so the test runs the passes one by one.
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { BerthError, Code, Service, ShimApi } from '@berth/api';
import { call, connectRedis, createLogger, keys, type Redis } from '@berth/kit';
import { createDomain, type Deps, type Domain, natsDeps } from '@berth/task-service';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ContainerStack, snapshotState, startContainerStack, until } from './containers-stack.js';

let IMAGE = 'berth.test/busybox:latest';
let s: ContainerStack;
let redis: Redis;
let domain: Domain;
/** Every shim `state` of a container the in-process domain asked, by id: each freeing begins with one. */
const asked: string[] = [];
/** What the in-process domain logged. */
const logged: { msg: string; id?: string; err?: string; failures?: number; retryInPasses?: number }[] = [];

beforeAll(async () => {
  s = await startContainerStack();
  IMAGE = (await s.importBusybox(IMAGE)).name;
  redis = connectRedis(s.redis.url);
  await redis.connect();
  const real = natsDeps(s.nc);
  const deps: Deps = {
    ...real,
    shim: (node, ns) => {
      const shim = real.shim(node, ns);
      return {
        ...shim,
        state: (input, opts) => {
          asked.push(input.id);
          return shim.state(input, opts);
        },
      };
    },
  };
  const log = createLogger({
    service: Service.task,
    node: s.node,
    level: 'info',
    destination: { write: (line: string) => void logged.push(JSON.parse(line)) },
  });
  domain = createDomain({ redis, deps, env: { node: s.node }, log });
}, 120_000);
afterAll(async () => {
  await redis?.quit();
  await s?.stop();
}, 60_000);

const ns = 'default';
const collecting = () => redis.hkeys(keys.containersCollecting(ns));
const shimTask = async (id: string) => {
  try {
    await call(s.nc, ShimApi, 'state', { namespace: ns, id }, { node: s.node, timeoutMs: 5_000 });
    return 'ok';
  } catch (err) {
    if (err instanceof BerthError) return err.code;
    throw err;
  }
};

/** A container that ran and exited (through the stack's task-service): its stopped task is on the node. */
async function exited(name: string): Promise<string> {
  const r = await s.berth(['run', '-d', '--network', 'none', '--name', name, IMAGE, 'true']);
  expect(r.code, r.stderr).toBe(0);
  const id = r.stdout.trim();
  await until('the container to exit', async () => (await s.berth(['wait', id])).code === 0);
  return id;
}

/** Removes a container in the background in this process and waits for its first freeing. */
async function removeInBackground(id: string): Promise<void> {
  await domain.tasks.removeContainer(ns, id, false, true);
  await domain.tasks.settle(30_000);
}

const failed = (id: string) =>
  logged.filter((l) => l.id === id && l.msg === 'reconcile: freeing a removed container failed');

describe('the reconcile and a removed container its node cannot free', () => {
  it('tries it after 1, 2, 4 ... passes (capped) and logs once a try; an unreachable shim is tried every pass', async () => {
    const broken = await exited('collect-broken');
    const other = await exited('collect-other');
    // From here on only this process's domain reconciles.
    await s.kill('task-service', 'SIGTERM');
    const stateFile = join(s.stateRoot, 'runc', ns, broken, 'state.json');
    const good = await readFile(stateFile);
    await writeFile(stateFile, '{"id":');
    await removeInBackground(broken);
    expect(await collecting()).toEqual([broken]);

    const tries = new Map<string, number[]>([
      [broken, []],
      [other, []],
    ]);
    let n = 0;
    const pass = async () => {
      n++;
      const before = [...tries.keys()].map((id) => asked.filter((a) => a === id).length);
      await domain.tasks.reconcile();
      [...tries.entries()].forEach(([id, at], i) => {
        if (asked.filter((a) => a === id).length > (before[i] as number)) at.push(n);
      });
    };
    while (n < 40) await pass();
    // Waits of 1, 2, 4, 8, then 10 passes (5 minutes of the default 30 s interval).
    expect(tries.get(broken)).toEqual([1, 3, 6, 11, 20, 31]);
    expect(failed(broken).map((l) => [l.failures, l.retryInPasses])).toEqual([
      [1, 1],
      [2, 2],
      [3, 4],
      [4, 8],
      [5, 10],
      [6, 10],
    ]);
    // runc's own failure, as the shim reports it.
    for (const l of failed(broken)) expect(l.err).toMatch(/unexpected EOF/);
    expect(await collecting()).toEqual([broken]);
    expect(await shimTask(broken)).toBe('ok');

    // runc could delete it now, but the shim is down: no responders is not the container's
    // failure. It and a container removed meanwhile are tried every pass, and each try logged.
    await writeFile(stateFile, good);
    await s.kill('shim', 'SIGKILL');
    await removeInBackground(other);
    expect((await collecting()).sort()).toEqual([broken, other].sort());
    const logs = failed(broken).length;
    while (n < 45) await pass();
    expect(tries.get(broken)?.slice(6)).toEqual([42, 43, 44, 45]);
    expect(tries.get(other)).toEqual([41, 42, 43, 44, 45]);
    expect(
      failed(broken)
        .slice(logs)
        .map((l) => l.retryInPasses),
    ).toEqual([undefined, undefined, undefined, undefined]);
    expect(failed(other).map((l) => l.retryInPasses)).toEqual(Array(5).fill(undefined));
    for (const l of [...failed(broken).slice(logs), ...failed(other)]) expect(l.err).toMatch(/no responder/);

    // The shim is back: the next pass frees both, and says once that the broken one recovered.
    await s.start('shim');
    await pass();
    expect(await collecting()).toEqual([]);
    for (const id of [broken, other]) {
      expect(await shimTask(id)).toBe(Code.NOT_FOUND);
      expect(await snapshotState(s, `containers/${ns}/${id}`)).toBe(Code.NOT_FOUND);
    }
    expect(
      logged.filter((l) => l.msg === 'reconcile: freed a removed container that had failed'),
    ).toMatchObject([{ id: broken, failures: 6 }]);
    const asks = asked.length;
    await pass();
    expect(asked.length).toBe(asks);
  }, 180_000);
});
