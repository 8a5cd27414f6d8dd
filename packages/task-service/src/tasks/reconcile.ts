import type { Container, Task } from '@berth/api';
import type { ServiceContext } from '@berth/kit';
import { backoffFields, type FreeReport, type FreeRetries } from '../containers/free-retries.js';
import type { ContainerManager } from '../containers/manager.js';
import type { ContainerStore } from '../store/store.js';

/** What one reconcile found and did. */
export interface ReconcileResult {
  /** Live tasks checked with their shims. */
  checked: number;
  /** Of those, tasks found exited (their exit recorded now). */
  exited: number;
  /** Creations a dead replica left half-made, undone. */
  undone: number;
  /** Removals that had stopped half-way, finished. */
  removed: number;
  /** Containers removed in the background whose node resources were freed now. */
  collected: number;
  /** Tasks a shim ran for a container without one on record, killed and deleted (see collect.ts). */
  dropped: number;
  /** Live tasks whose shim could not be asked (down, or not serving yet): the next pass asks again. */
  unreachable: number;
}

/** What the reconcile needs of the task manager: its store and the steps it shares with requests. */
export interface ReconcileDeps {
  store: ContainerStore;
  containers: ContainerManager;
  log: ServiceContext['log'];
  /** Asks the shim about a task the store thinks alive; records an exit it missed. */
  heal(c: Container, t: Task): Promise<Task>;
  /** Removes a stopped container labelled for auto-removal. */
  autoRemove(ns: string, id: string): Promise<void>;
  /** Removes a container, killing its task if need be. */
  remove(ns: string, id: string): Promise<void>;
  /** Which removed containers to free this pass: those whose freeing keeps failing wait (kept across passes). */
  collectRetries: FreeRetries;
  /** Which removals that stopped half-way to finish this pass: those that keep failing wait (kept across passes). */
  removeRetries: FreeRetries;
}

/**
 * Reconciles the store of every namespace with the nodes. First every live task is checked with
 * its shim, in every namespace, so exits that happened while no task-service was listening get
 * recorded before anything below can wait on a lock. Then the half-made containers: creations
 * whose replica died are undone once their lock is free, removals that stopped half-way (a shim or
 * snapshot-service was down) are finished (each waits for its container's lock, up to the TTL of
 * a dead holder's), what containers removed in the background held on their nodes is freed where
 * that had not finished (a removal or a freeing that keeps failing on its node is tried after 1,
 * 2, 4 ... passes, see FreeRetries), stopped containers labelled for auto-removal go, and a task a
 * shim runs for a container without one on record (its create's replica died) is killed and
 * deleted; chain claims stored by a task-service of the version before their index are indexed
 * (see ContainerStore.indexClaims). A node that cannot be reached is skipped (logged, and counted
 * in `unreachable`): the next reconcile, or a later state(), gets it.
 */
export async function reconcileAll(d: ReconcileDeps): Promise<ReconcileResult> {
  const r: ReconcileResult = {
    checked: 0,
    exited: 0,
    undone: 0,
    removed: 0,
    collected: 0,
    dropped: 0,
    unreachable: 0,
  };
  d.collectRetries.beginPass();
  d.removeRetries.beginPass();
  const seen: { ns: string; stopped: string[]; taskless: Container[]; unmounted: string[] }[] = [];
  for (const ns of await d.store.namespaces()) {
    const stopped: string[] = [];
    const taskless: Container[] = [];
    const unmounted: string[] = [];
    for (const i of await d.store.list(ns)) {
      if (i.task?.status === 'stopped') stopped.push(i.container.id);
      if (!i.task) taskless.push(i.container);
      if (!i.container.rootfs && i.container.image.chainId) unmounted.push(i.container.id);
      if (!i.task || i.task.status === 'stopped') continue;
      r.checked++;
      try {
        const t = await d.heal(i.container, i.task);
        if (t.status === 'stopped') r.exited++;
      } catch (err) {
        r.unreachable++;
        d.log.warn(
          { err: (err as Error).message, id: i.container.id, node: i.container.node },
          'reconcile: shim unreachable',
        );
      }
    }
    seen.push({ ns, stopped, taskless, unmounted });
  }
  for (const { ns, stopped, taskless, unmounted } of seen) {
    // The records that may claim their chain: a claim a task-service of the version before the
    // index stored (one still running in a rolling upgrade) is indexed here, for `claimed-chains`.
    if (unmounted.length > 0) {
      await d.store
        .indexClaims(ns, unmounted)
        .catch((err: unknown) =>
          d.log.warn({ err: (err as Error).message, ns }, 'reconcile: indexing chain claims failed'),
        );
    }
    try {
      r.undone += await d.containers.reconcileCreations(ns);
    } catch (err) {
      d.log.warn({ err: (err as Error).message, ns }, 'reconcile: undoing a half-made creation failed');
    }
    r.removed += await finishRemovals(d, ns);
    r.collected += await d.containers.reconcileCollections(ns, d.collectRetries, {
      onError: (err, c, backoff) =>
        d.log.warn(
          { err: (err as Error).message, ns, id: c.id, ...backoffFields(backoff) },
          'reconcile: freeing a removed container failed',
        ),
      recovered: (c, failures) =>
        d.log.info({ ns, id: c.id, failures }, 'reconcile: freed a removed container that had failed'),
    });
    for (const id of stopped) await d.autoRemove(ns, id);
    if (taskless.length === 0) continue;
    r.dropped += await d.containers.dropUnrecordedTasks(ns, taskless, (err, node) =>
      d.log.warn({ err: (err as Error).message, ns, node }, 'reconcile: dropping unrecorded tasks failed'),
    );
  }
  d.collectRetries.endPass();
  d.removeRetries.endPass();
  return r;
}

/**
 * Finishes the removals of a namespace that stopped half-way, those `d.removeRetries` says are
 * due; returns how many it finished. A failure is logged once a try, with the back-off it led to.
 */
async function finishRemovals(d: ReconcileDeps, ns: string): Promise<number> {
  const report: FreeReport = {
    onError: (err, c, backoff) =>
      d.log.warn(
        { err: (err as Error).message, ns, id: c.id, ...backoffFields(backoff) },
        'reconcile: finishing a removal failed',
      ),
    recovered: (c, failures) =>
      d.log.info({ ns, id: c.id, failures }, 'reconcile: finished a removal that had failed'),
  };
  let done = 0;
  for (const c of await d.store.removing(ns)) {
    const finish = async () => {
      try {
        await d.remove(ns, c.id);
        return true;
      } catch (err) {
        // Another remover (a request, the CRI gateway's collection of a failed RunPodSandbox)
        // finished it after the list above: the record is gone, nothing is left to finish.
        const gone = await d.store.get(ns, c.id).then(
          (got) => got === undefined,
          () => false,
        );
        if (gone) return false;
        throw err;
      }
    };
    if (await d.removeRetries.attempt(c, finish, report)) done++;
  }
  return done;
}
