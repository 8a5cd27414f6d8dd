/**
 * The setup the `berth up` end-to-end files share: a registry holding the test busybox image,
 * and stacks started with the harness's startStack (one, several nodes on one external NATS and
 * Redis, co-hosted, with tracing on: whatever StackOptions each node is given). stop() removes
 * every container, runc's leftovers and mounts before stopping the stacks and servers.
 *
 * Usage:
 *   let f: UpFixture;
 *   beforeAll(async () => {
 *     f = await startUpFixture({ nodes: [{}, {}], shared: true });   // two nodes, one cluster
 *   }, 120_000);
 *   afterAll(() => f?.stop(), 60_000);
 *   // f.stacks[0].berth('run', '--rm', f.image, 'true') ...
 */
import { rm } from 'node:fs/promises';
import { startNats, startRedis, startRegistry, type TestServer, tempDir } from '@berth/testing';
import { type Stack, type StackOptions, startStack } from '../harness/stack.js';
import { pushBusybox, sweepRunc, unmountUnder } from './containers-stack.js';

export interface UpFixtureOptions {
  /** One `berth up` stack is started per entry, with these options (none: start them later). */
  nodes?: StackOptions[];
  /** The nodes use one external nats-server and redis-server: they form one cluster. */
  shared?: boolean;
  /** Start the nodes together rather than one after another. */
  parallel?: boolean;
}

/** Stacks and the registry of one test file; see the module comment. */
export interface UpFixture {
  /** The stacks started so far, in order (the nodes, then addStack's). */
  readonly stacks: Stack[];
  registry: TestServer & { host: string };
  /** The busybox image's reference in the registry (`<registry>/busybox:latest`). */
  image: string;
  /** Starts one more stack (on the shared servers, if any); stop() stops it. */
  addStack(opts?: StackOptions): Promise<Stack>;
  /** Removes every stack's containers, then sweeps and stops each; then stops the servers. */
  stop(): Promise<void>;
}

/**
 * Removes the containers of each stack (from every stack first: a node's `rm -f` may need the
 * others' services), sweeps what runc and the mounts kept of them, then stops each stack.
 */
async function stopStacks(stacks: readonly (Stack | undefined)[]): Promise<void> {
  for (const st of stacks) {
    if (!st) continue;
    const ids = (await st.berth('ps', '-aq')).stdout.split(/\s+/).filter(Boolean);
    if (ids.length) await st.berth('rm', '-f', ...ids);
  }
  for (const st of stacks) {
    if (!st) continue;
    sweepRunc(st.stateRoot);
    unmountUnder(st.root);
    await st.stop();
  }
}

/**
 * Waits for every start; keeps what started (so that stop() stops it) and then fails with the
 * first failure, if any.
 */
async function allStarted<T extends unknown[]>(
  starts: { [K in keyof T]: Promise<T[K]> },
  keep: (started: T[number]) => void,
): Promise<T> {
  const results = await Promise.allSettled(starts);
  for (const r of results) if (r.status === 'fulfilled') keep(r.value);
  const failed = results.find((r) => r.status === 'rejected');
  if (failed) throw (failed as PromiseRejectedResult).reason;
  return results.map((r) => (r as PromiseFulfilledResult<unknown>).value) as T;
}

/** Starts a registry holding busybox and the stacks `opts` names; see the module comment. */
export async function startUpFixture(opts: UpFixtureOptions = {}): Promise<UpFixture> {
  const stacks: Stack[] = [];
  const servers: TestServer[] = [];
  let work: string | undefined;
  const stop = async () => {
    await stopStacks(stacks);
    await Promise.all(servers.map((s) => s.stop()));
    if (work) await rm(work, { recursive: true, force: true });
  };
  try {
    const registry = await startRegistry();
    servers.push(registry);
    let on: StackOptions = {};
    if (opts.shared) {
      const [nats, redis] = await allStarted([startNats(), startRedis()], (s) => servers.push(s));
      on = { natsUrl: nats.url, redisUrl: redis.url };
    }
    const addStack = async (o: StackOptions = {}) => {
      const st = await startStack({ ...on, ...o });
      stacks.push(st);
      return st;
    };
    const nodes = opts.nodes ?? [];
    if (opts.parallel) {
      await allStarted(
        nodes.map((o) => startStack({ ...on, ...o })),
        (st) => stacks.push(st),
      );
    } else for (const o of nodes) await addStack(o);
    work = await tempDir('up-fixture');
    const image = `${registry.host}/busybox:latest`;
    await pushBusybox(work, image);
    return {
      stacks,
      registry,
      image,
      addStack,
      stop,
    };
  } catch (err) {
    await stop().catch(() => undefined);
    throw err;
  }
}
