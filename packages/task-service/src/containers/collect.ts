import { BerthError, Code, type Container, type Task } from '@berth/api';
import { keys, type Lock, type Redis, withLockIfFree } from '@berth/kit';
import type { Deps } from '../deps.js';
import type { ContainerStore } from '../store/store.js';
import type { FreeReport, FreeRetries } from './free-retries.js';

/** Swallows the errors that mean "already gone" during cleanup. */
export function ignoreGone(p: Promise<unknown>): Promise<void> {
  return ignoring(p, Code.NOT_FOUND, Code.FAILED_PRECONDITION);
}

/** Settles when `p` does, swallowing a BerthError with one of `codes`. */
export async function ignoring(p: Promise<unknown>, ...codes: Code[]): Promise<void> {
  try {
    await p;
  } catch (err) {
    if (err instanceof BerthError && codes.includes(err.code)) return;
    throw err;
  }
}

/**
 * Tears down a bridge container's network on its node (CNI DEL, the lease released, the namespace
 * unpinned). Idempotent: a container whose network is already gone (a crash, a reboot the shim
 * recovered from) succeeds.
 */
export async function releaseNetwork(deps: Deps, node: string, ns: string, id: string): Promise<void> {
  await deps.shim(node, ns)['network-teardown']({ podId: id, force: false });
}

/**
 * Starts tearing down the bridge network of a container being removed, to run while its task is
 * deleted (runc delete, unmount, bundle removal) instead of after it: both are a few processes
 * each (~100-200 ms of `berth run --rm`). Only once no new task can appear: creates check the
 * removing mark (set by the caller) under the container's lock, so the lock is taken once, which
 * waits out a create already past that check, and the task must still be the one the removal saw.
 * Undefined when nothing was started; freeOnNode's teardown later finds the network gone.
 */
export async function releaseNetworkMeanwhile(
  deps: Deps,
  store: ContainerStore,
  lock: (fn: () => Promise<boolean>) => Promise<boolean>,
  c: Container,
  seen: Task,
): Promise<{ released: Promise<void> } | undefined> {
  if (c.config.network !== 'bridge') return undefined;
  const same = await lock(async () => (await store.getTask(c.namespace, c.id))?.createdAt === seen.createdAt);
  // Wrapped: an async function returning the promise itself would wait for the teardown.
  return same ? { released: releaseNetwork(deps, c.node, c.namespace, c.id) } : undefined;
}

/**
 * Frees everything a container holds on its node, the reverse of how it was made: its task there
 * (recorded or not), its generated files and kept log, its network, its rootfs snapshot. Each
 * step is idempotent; the first that fails (its shim or snapshot-service is down) stops here with
 * what comes after it still in place, so running it again finishes the job.
 */
export async function freeOnNode(deps: Deps, c: Container): Promise<void> {
  await dropShimTask(deps, c);
  await deps.shim(c.node, c.namespace)['remove-files']({ namespace: c.namespace, id: c.id });
  if (c.config.network === 'bridge') await releaseNetwork(deps, c.node, c.namespace, c.id);
  await ignoreGone(deps.snapshots(c.node).remove({ key: c.snapshotKey }));
}

/**
 * Kills and deletes any task the container's shim still has: a stopped one the task-service did
 * not delete (a removal in the background leaves that to collect), or one it never recorded (a
 * create whose reply was lost when a service died). The shim refuses remove-files while it has one.
 */
async function dropShimTask(deps: Deps, c: Container): Promise<void> {
  const shim = deps.shim(c.node, c.namespace);
  const ref = { namespace: c.namespace, id: c.id };
  let status: string;
  try {
    status = (await shim.state(ref)).status;
  } catch (err) {
    if (err instanceof BerthError && err.code === Code.NOT_FOUND) return;
    throw err;
  }
  // A created (or stopped) task is deleted as it is; a started one is killed first and waited for,
  // since delete refuses a task still exiting. One that outlives the wait fails the delete, which
  // says so (the reconcile retries), rather than remove-files refusing a task stopped meanwhile.
  if (status === 'running' || status === 'paused') {
    await ignoreGone(shim.kill({ ...ref, signal: 'SIGKILL', all: true }));
    await ignoring(shim.wait(ref, { timeoutMs: KILL_WAIT_MS }), Code.NOT_FOUND, Code.DEADLINE_EXCEEDED);
  }
  await ignoring(shim.delete(ref), Code.NOT_FOUND);
}

/** Bound on how long freeing a container waits for its killed task to exit. */
const KILL_WAIT_MS = 10_000;

/**
 * Kills and deletes the tasks a node's shim runs for containers of `ns` that have no task on
 * record: a task create or start whose replica died (or whose reply was lost) after the shim made
 * the task and before the task-service recorded it. The caller was told the call failed, and the
 * task blocks every later create of the container (the shim has one already), so it is undone, as
 * a half-made creation is. Only once the container's lock is free (no create is under way) and,
 * read again under it, the container is still there, not being removed (its removal frees the
 * task) and without a task. `taskless` are the containers the caller found without one. Returns
 * how many tasks were dropped; a node that cannot be reached is left for the next reconcile.
 */
export async function dropUnrecordedTasks(
  d: CollectDeps,
  ns: string,
  taskless: Container[],
  onError: (err: unknown, node: string) => void,
): Promise<number> {
  const byNode = new Map<string, Map<string, Container>>();
  for (const c of taskless) {
    const m = byNode.get(c.node) ?? new Map<string, Container>();
    byNode.set(c.node, m);
    m.set(c.id, c);
  }
  let dropped = 0;
  for (const [node, containers] of byNode) {
    let ids: Set<string>;
    try {
      ids = await shimTaskIds(d.deps, node, ns);
    } catch (err) {
      onError(err, node);
      continue;
    }
    for (const id of ids) {
      const c = containers.get(id);
      if (!c) continue;
      // One task that will not go (a process stuck in the kernel outlives SIGKILL) is reported
      // and the node's others are still dropped.
      try {
        const done = await lockIfFree(d, ns, id, async () => {
          const now = await d.store.current(ns, id);
          if (!now.c || now.removing || now.task) return false;
          await dropShimTask(d.deps, now.c);
          return true;
        });
        if (done?.value) dropped++;
      } catch (err) {
        onError(err, node);
      }
    }
  }
  return dropped;
}

/** The ids of the tasks (not execs) a node's shim runs in a namespace, every page of them. */
async function shimTaskIds(deps: Deps, node: string, ns: string): Promise<Set<string>> {
  const ids = new Set<string>();
  let cursor: string | undefined;
  do {
    const page = await deps.shim(node, ns).list({ namespace: ns, ...(cursor ? { cursor } : {}) });
    for (const t of page.tasks) if (!t.execId) ids.add(t.id);
    cursor = page.nextCursor;
  } while (cursor);
  return ids;
}

/** Runs `fn` under the container's lock unless another holds it (then undefined, see withLockIfFree). */
function lockIfFree<T>(d: CollectDeps, ns: string, id: string, fn: (lock: Lock) => Promise<T>) {
  return withLockIfFree(
    d.redis,
    keys.containerLock(ns, id),
    { ttlMs: d.lockTtlMs, what: `container ${id}` },
    fn,
  );
}

/** What collecting needs: the store, Redis for the container lock, the node clients. */
export interface CollectDeps {
  store: ContainerStore;
  redis: Redis;
  deps: Deps;
  lockTtlMs: number;
}

/**
 * Frees what a container removed in the background held on its node (freeOnNode), then forgets
 * it. False, doing nothing, while another replica holds the container's lock (it is collecting the
 * same container); a step that throws leaves it kept for the next reconcile.
 */
export async function collect(d: CollectDeps, c: Container): Promise<boolean> {
  const done = await lockIfFree(d, c.namespace, c.id, async (lock) => {
    await freeOnNode(d.deps, c);
    // Lost mid-way (Redis away past the ttl): another may be freeing it; the reconcile ends it.
    lock.lost?.throwIfAborted();
    await d.store.endCollect(c.namespace, c.id);
  });
  return done !== undefined;
}

/**
 * Collects every container of a namespace removed in the background and not yet freed (a replica
 * died, or a node was unreachable), those `retries` says are due. Returns how many were finished;
 * failures go to `onError` and stay for a later reconcile: the next one for a transient failure,
 * one some passes on for a failure the node reports (see FreeRetries).
 */
export async function collectAll(
  d: CollectDeps,
  ns: string,
  retries: FreeRetries,
  report: FreeReport,
): Promise<number> {
  let done = 0;
  for (const c of await d.store.collecting(ns))
    if (await retries.attempt(c, () => collect(d, c), report)) done++;
  return done;
}
