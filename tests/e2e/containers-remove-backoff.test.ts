// A removal in the foreground (`berth rm`, the CRI's RemoveContainer without background) that
// failed leaves its container marked removing, for the reconcile to finish. One its node cannot
// finish for good (runc cannot delete the task: the state.json under the shim's real runc root
// broken by hand) is not retried and logged every pass forever: the reconcile tries it after 1, 2,
// 4 ... passes (at most 5 minutes' worth of the interval), logs each try once, starts afresh when
// the record is written again, and finishes it once runc can. A shim that is down is not such a
// failure: the removals it holds up are tried every pass, as before. As in
// containers-collect-backoff.test.ts, the task-service's domain runs in this process
// (reconcile-world.ts) and the test runs the passes one by one.
import { readFile, writeFile } from 'node:fs/promises';
import { Code } from '@berth/api';
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
/** Shim calls of the in-process domain about `id`: each try of its removal makes some. */
const callsAbout = (id: string) => w.shimCalls.filter((c) => c.id === id).length;
const failed = (id: string) =>
  w.logged.filter((l) => l.id === id && l.msg === 'reconcile: finishing a removal failed');

describe('the reconcile and a removal its node cannot finish', () => {
  it('tries it after 1, 2, 4 ... passes (capped), afresh for a new record; an unreachable shim every pass', async () => {
    const broken = await w.exited('rm-broken');
    const other = await w.exited('rm-other');
    const stateFile = w.stateFile(ns, broken);
    const good = await readFile(stateFile);
    await writeFile(stateFile, '{"id":');
    // The user's removal fails with runc's error and leaves the container marked removing.
    const rm = await w.s.berth(['rm', broken]);
    expect(rm.code).not.toBe(0);
    expect(rm.stderr).toMatch(/unexpected EOF/);
    // From here on only this process's domain reconciles.
    await w.s.kill('task-service', 'SIGTERM');
    expect(await w.domain.store.isRemoving(ns, broken)).toBe(true);

    const { tries, pass, count } = w.passes([broken, other], callsAbout);
    while (count() < 40) await pass();
    expectBackedOff(tries.get(broken), failed(broken));
    expect(await w.domain.store.isRemoving(ns, broken)).toBe(true);

    // The record written again (a label update): tried in the next pass, counted from one.
    await w.domain.containers.update(ns, { id: broken, labels: { retried: 'yes' } });
    await pass();
    await pass();
    expect(tries.get(broken)?.slice(6)).toEqual([41]);
    expect(
      failed(broken)
        .map((l) => [l.failures, l.retryInPasses])
        .slice(6),
    ).toEqual([[1, 1]]);

    // runc could delete it now, but the shim is down: no responders is not the container's
    // failure. It and a removal that failed meanwhile are tried every pass, and each try logged.
    await writeFile(stateFile, good);
    await w.killShim();
    await expect(w.domain.tasks.removeContainer(ns, other, false)).rejects.toThrow(/no responder/);
    expect(await w.domain.store.isRemoving(ns, other)).toBe(true);
    const logs = failed(broken).length;
    while (count() < 47) await pass();
    expect(tries.get(broken)?.slice(7)).toEqual([43, 44, 45, 46, 47]);
    expect(tries.get(other)).toEqual([43, 44, 45, 46, 47]);
    const unreachable = [...failed(broken).slice(logs), ...failed(other)];
    expect(unreachable.map((l) => l.retryInPasses)).toEqual(Array(10).fill(undefined));
    for (const l of unreachable) expect(l.err).toMatch(/no responder/);

    // The shim is back: the next pass finishes both, and says once that the broken one recovered
    // (one failure counted since its record changed; the unreachable shim's are not).
    await w.s.start('shim');
    await pass();
    for (const id of [broken, other]) {
      expect(await w.domain.store.get(ns, id)).toBeUndefined();
      expect(await w.shimTask(ns, id)).toBe(Code.NOT_FOUND);
      expect(await snapshotState(w.s, `containers/${ns}/${id}`)).toBe(Code.NOT_FOUND);
    }
    expect(w.logged.filter((l) => l.msg === 'reconcile: finished a removal that had failed')).toMatchObject([
      { id: broken, failures: 1 },
    ]);
    const calls = w.shimCalls.length;
    await pass();
    expect(w.shimCalls.length).toBe(calls);
  }, 180_000);
});
