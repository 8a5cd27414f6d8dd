import { BerthError, Code, type Container } from '@berth/api';
import { describe, expect, it } from 'vitest';
import { FreeRetries } from '../containers/free-retries.js';
import type { ContainerManager } from '../containers/manager.js';
import type { ContainerStore } from '../store/store.js';
import { type ReconcileDeps, reconcileAll } from './reconcile.js';

// reconcileAll's handling of unfinished removals, with stand-ins for the store and the steps: what
// is checked is what the pass reports and logs, not the removal itself (service.test.ts runs that).

const ID = 'a'.repeat(64);

/** What the pass logged: the message and the fields the back-off adds. */
interface Logged {
  msg: string;
  failures?: number;
  retryInPasses?: number;
}

/** Deps whose store has one container marked removing; `remove` does what `removeWith` says. */
function deps(removeWith: (records: Map<string, Container>) => Promise<void>) {
  const records = new Map([[ID, record('t1')]]);
  const warnings: string[] = [];
  const logged: Logged[] = [];
  const log = (o: Partial<Logged>, msg: string) =>
    logged.push({
      msg,
      ...(o.failures === undefined ? {} : { failures: o.failures, retryInPasses: o.retryInPasses }),
    });
  const store = {
    namespaces: async () => ['default'],
    list: async () => [],
    removing: async () => [...records.values()],
    get: async (_ns: string, id: string) => records.get(id),
  } as unknown as ContainerStore;
  const containers = {
    reconcileCreations: async () => 0,
    reconcileCollections: async () => 0,
  } as unknown as ContainerManager;
  const d: ReconcileDeps = {
    store,
    containers,
    log: {
      warn: (o: Partial<Logged>, msg: string) => {
        warnings.push(msg);
        log(o, msg);
      },
      info: log,
    } as unknown as ReconcileDeps['log'],
    heal: async () => {
      throw new Error('no live task here');
    },
    autoRemove: async () => undefined,
    remove: () => removeWith(records),
    collectRetries: new FreeRetries(),
    removeRetries: new FreeRetries(),
  };
  return { d, warnings, logged, records };
}

/** The container's record as stored at `updatedAt`. */
function record(updatedAt: string): Container {
  return { id: ID, namespace: 'default', createdAt: 't0', updatedAt } as Container;
}

describe('reconcileAll, on a removal left unfinished', () => {
  it('takes one another remover finished meanwhile as done, without a warning', async () => {
    // The CRI gateway's collection of a failed RunPodSandbox removed it between the pass's list
    // of removals and its own removal (as in the chaos suite, after a shim came back).
    const { d, warnings } = deps(async (records) => {
      records.delete(ID);
      throw new BerthError(Code.NOT_FOUND, `container "${ID}" not found`);
    });
    const r = await reconcileAll(d);
    expect(warnings).toEqual([]);
    expect(r.removed).toBe(0);
  });

  it('warns when the removal failed and the container is still there', async () => {
    const { d, warnings } = deps(async () => {
      throw new BerthError(Code.UNAVAILABLE, 'shim is unavailable');
    });
    const r = await reconcileAll(d);
    expect(warnings).toEqual(['reconcile: finishing a removal failed']);
    expect(r.removed).toBe(0);
  });

  it('counts a removal it finished', async () => {
    const { d, warnings } = deps(async (records) => {
      records.delete(ID);
    });
    expect((await reconcileAll(d)).removed).toBe(1);
    expect(warnings).toEqual([]);
  });

  it('tries a removal its node keeps failing after 1, 2, 4 ... passes, and logs each try once', async () => {
    let fail = true;
    let tries = 0;
    const { d, logged, records } = deps(async (records) => {
      tries++;
      if (fail) throw new BerthError(Code.INTERNAL, 'runc delete failed: unexpected EOF');
      records.delete(ID);
    });
    const triedIn: number[] = [];
    for (let n = 1; n <= 12; n++) {
      const before = tries;
      await reconcileAll(d);
      if (tries > before) triedIn.push(n);
    }
    expect(triedIn).toEqual([1, 3, 6, 11]);
    expect(logged).toEqual([
      { msg: 'reconcile: finishing a removal failed', failures: 1, retryInPasses: 1 },
      { msg: 'reconcile: finishing a removal failed', failures: 2, retryInPasses: 2 },
      { msg: 'reconcile: finishing a removal failed', failures: 3, retryInPasses: 4 },
      { msg: 'reconcile: finishing a removal failed', failures: 4, retryInPasses: 8 },
    ]);
    // The record written again (an update): tried in the next pass, its count starts afresh.
    records.set(ID, record('t2'));
    await reconcileAll(d);
    expect(tries).toBe(5);
    expect(logged.at(-1)).toEqual({
      msg: 'reconcile: finishing a removal failed',
      failures: 1,
      retryInPasses: 1,
    });
    await reconcileAll(d);
    expect(tries).toBe(5);
    // Its node can now: finished in the pass it is due, said once, and never tried again.
    fail = false;
    logged.length = 0;
    const r = await reconcileAll(d);
    expect(tries).toBe(6);
    expect(r.removed).toBe(1);
    expect(logged).toEqual([{ msg: 'reconcile: finished a removal that had failed', failures: 1 }]);
  });

  it("tries a removal every pass while it fails for a reason not the container's", async () => {
    let tries = 0;
    const { d, logged } = deps(async () => {
      tries++;
      throw new BerthError(Code.UNAVAILABLE, 'no responders: shim is unavailable');
    });
    for (let n = 0; n < 5; n++) await reconcileAll(d);
    expect(tries).toBe(5);
    expect(logged).toEqual(Array(5).fill({ msg: 'reconcile: finishing a removal failed' }));
  });

  it('forgets the failures of a container the pass no longer finds', async () => {
    let tries = 0;
    const { d, records } = deps(async () => {
      tries++;
      throw new BerthError(Code.INTERNAL, 'runc delete failed');
    });
    await reconcileAll(d);
    const held = records.get(ID) as Container;
    // A pass that does not find it (finished by a request) forgets it: the same record back, as
    // only a stand-in store can bring it, is tried at once.
    records.delete(ID);
    await reconcileAll(d);
    records.set(ID, held);
    await reconcileAll(d);
    expect(tries).toBe(2);
  });
});
