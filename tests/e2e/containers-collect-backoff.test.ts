// A container removed in the background whose node cannot free it for good (runc cannot delete
// its task: the state.json under the shim's real runc root broken by hand) is not retried and
// logged every reconcile pass forever: the reconcile tries it after 1, 2, 4 ... passes (at most
// 5 minutes' worth of the interval), logs each try once, and frees it once runc can. A shim that
// is down is not such a failure: the containers it holds are tried again every pass, as before.
// The stack's shim, snapshot-service and runc are real; the task-service's domain runs in this
// process (the stack's replica is stopped), so the test runs the passes one by one
// (reconcile-world.ts).
import { readFile, writeFile } from 'node:fs/promises';
import { Code } from '@berth/api';
import { keys } from '@berth/kit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { snapshotState } from './containers-stack.js';
import { expectBackedOff, type ReconcileWorld, startReconcileWorld } from './reconcile-world.js';

let w: ReconcileWorld;

beforeAll(async () => {
  w = await startReconcileWorld();
}, 120_000);
afterAll(async () => {
  await w?.stop();
}, 60_000);

const ns = 'default';
const collecting = () => w.redis.hkeys(keys.containersCollecting(ns));
/** The ids of the shim `state`s the in-process domain asked: each freeing begins with one. */
const asked = () => w.shimCalls.filter((c) => c.op === 'state').map((c) => c.id);

/** Removes a container in the background in this process and waits for its first freeing. */
async function removeInBackground(id: string): Promise<void> {
  await w.domain.tasks.removeContainer(ns, id, false, true);
  await w.domain.tasks.settle(30_000);
}

const failed = (id: string) =>
  w.logged.filter((l) => l.id === id && l.msg === 'reconcile: freeing a removed container failed');

describe('the reconcile and a removed container its node cannot free', () => {
  it('tries it after 1, 2, 4 ... passes (capped) and logs once a try; an unreachable shim is tried every pass', async () => {
    const broken = await w.exited('collect-broken');
    const other = await w.exited('collect-other');
    // From here on only this process's domain reconciles.
    await w.s.kill('task-service', 'SIGTERM');
    const stateFile = w.stateFile(ns, broken);
    const good = await readFile(stateFile);
    await writeFile(stateFile, '{"id":');
    await removeInBackground(broken);
    expect(await collecting()).toEqual([broken]);

    const { tries, pass, count } = w.passes([broken, other], (id) => asked().filter((a) => a === id).length);
    while (count() < 40) await pass();
    expectBackedOff(tries.get(broken), failed(broken));
    expect(await collecting()).toEqual([broken]);
    expect(await w.shimTask(ns, broken)).toBe('ok');

    // runc could delete it now, but the shim is down: no responders is not the container's
    // failure. It and a container removed meanwhile are tried every pass, and each try logged.
    await writeFile(stateFile, good);
    await w.killShim();
    await removeInBackground(other);
    expect((await collecting()).sort()).toEqual([broken, other].sort());
    const logs = failed(broken).length;
    while (count() < 45) await pass();
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
    await w.s.start('shim');
    await pass();
    expect(await collecting()).toEqual([]);
    for (const id of [broken, other]) {
      expect(await w.shimTask(ns, id)).toBe(Code.NOT_FOUND);
      expect(await snapshotState(w.s, `containers/${ns}/${id}`)).toBe(Code.NOT_FOUND);
    }
    expect(
      w.logged.filter((l) => l.msg === 'reconcile: freed a removed container that had failed'),
    ).toMatchObject([{ id: broken, failures: 6 }]);
    const asks = asked().length;
    await pass();
    expect(asked().length).toBe(asks);
  }, 180_000);
});
