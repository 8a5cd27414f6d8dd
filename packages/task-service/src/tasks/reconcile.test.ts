import { BerthError, Code, type Container } from '@berth/api';
import { describe, expect, it } from 'vitest';
import { FreeRetries } from '../containers/free-retries.js';
import type { ContainerManager } from '../containers/manager.js';
import type { ContainerStore } from '../store/store.js';
import { type ReconcileDeps, reconcileAll } from './reconcile.js';

// reconcileAll's handling of unfinished removals, with stand-ins for the store and the steps: what
// is checked is what the pass reports and logs, not the removal itself (service.test.ts runs that).

const ID = 'a'.repeat(64);

/** Deps whose store has one container marked removing; `remove` does what `removeWith` says. */
function deps(removeWith: (records: Map<string, Container>) => Promise<void>) {
  const records = new Map([[ID, { id: ID } as Container]]);
  const warnings: string[] = [];
  const store = {
    namespaces: async () => ['default'],
    list: async () => [],
    removing: async () => [ID],
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
      warn: (_o: unknown, msg: string) => warnings.push(msg),
    } as unknown as ReconcileDeps['log'],
    heal: async () => {
      throw new Error('no live task here');
    },
    autoRemove: async () => undefined,
    remove: () => removeWith(records),
    collectRetries: new FreeRetries(),
  };
  return { d, warnings };
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
});
