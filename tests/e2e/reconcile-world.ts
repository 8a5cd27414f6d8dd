/**
 * The world of the reconcile's back-off tests: the stack's real shim, snapshot-service and runc,
 * and the task-service's domain in the test process (a test stops the stack's replica once its
 * containers are made), so a test runs the passes one by one and sees every shim call and log line
 * of that domain. The recipe for a failure the node reports for good: break the task's state.json
 * under the shim's real runc root (stateFile), and runc cannot delete the task.
 */
import { join } from 'node:path';
import { BerthError, Service, ShimApi } from '@berth/api';
import { type Client, call, connectRedis, createLogger, type Redis } from '@berth/kit';
import { createDomain, type Deps, type Domain, natsDeps } from '@berth/task-service';
import { expect } from 'vitest';
import { type ContainerStack, startContainerStack, until } from './containers-stack.js';

/** A line the in-process domain logged, with the fields the back-off tests read. */
export interface Logged {
  msg: string;
  id?: string;
  err?: string;
  failures?: number;
  retryInPasses?: number;
}

/**
 * What 40 passes show of a container whose every try fails with runc's error on the broken
 * state.json (see stateFile): tried in passes 1, 3, 6, 11, 20, 31 (waits of 1, 2, 4, 8, then 10
 * passes: 5 minutes of the default 30 s interval), each try logged once with its count and wait.
 */
export function expectBackedOff(tries: number[] | undefined, logged: Logged[]): void {
  expect(tries).toEqual([1, 3, 6, 11, 20, 31]);
  expect(logged.map((l) => [l.failures, l.retryInPasses])).toEqual([
    [1, 1],
    [2, 2],
    [3, 4],
    [4, 8],
    [5, 10],
    [6, 10],
  ]);
  // runc's own failure, as the shim reports it.
  for (const l of logged) expect(l.err).toMatch(/unexpected EOF/);
}

/** The stack and the in-process domain (see the top of this file). */
export interface ReconcileWorld {
  s: ContainerStack;
  redis: Redis;
  domain: Domain;
  /** Every shim call of the in-process domain about one container, in order: operation and id. */
  shimCalls: { op: string; id: string }[];
  logged: Logged[];
  /** Runs `name` to its exit through the stack's task-service (`berth run -d`); returns its id. */
  exited(name: string): Promise<string>;
  /** What the shim says of the task: 'ok' or the error code. */
  shimTask(ns: string, id: string): Promise<string>;
  /** The task's state.json under the shim's runc root. */
  stateFile(ns: string, id: string): string;
  /**
   * SIGKILLs the stack's shim and waits until NATS has dropped its subscriptions (a call finds
   * no responders), so the next call of a test meets that, not a request to a dead connection.
   */
  killShim(): Promise<void>;
  /**
   * Reconcile passes run one at a time: `pass()` runs the next, `tries` notes for each of `ids`
   * the passes (numbered from 1) in which the domain asked its shim about it (`asked(id)` counts
   * those calls so far), `count()` how many passes ran.
   */
  passes(
    ids: string[],
    asked: (id: string) => number,
  ): { tries: Map<string, number[]>; pass(): Promise<void>; count(): number };
  stop(): Promise<void>;
}

/** Starts the stack, imports busybox and builds the in-process domain over the stack's services. */
export async function startReconcileWorld(): Promise<ReconcileWorld> {
  const s = await startContainerStack();
  const image = (await s.importBusybox('berth.test/busybox:latest')).name;
  const redis = connectRedis(s.redis.url);
  await redis.connect();
  const shimCalls: { op: string; id: string }[] = [];
  const logged: Logged[] = [];
  const real = natsDeps(s.nc);
  const deps: Deps = {
    ...real,
    shim: (node, ns) => {
      const shim = real.shim(node, ns);
      const counted = Object.entries(shim).map(([op, fn]) => [
        op,
        (input: { id?: string }, opts: unknown) => {
          if (input.id) shimCalls.push({ op, id: input.id });
          return (fn as (i: unknown, o: unknown) => Promise<unknown>)(input, opts);
        },
      ]);
      return Object.fromEntries(counted) as Client<typeof ShimApi>;
    },
  };
  const log = createLogger({
    service: Service.task,
    node: s.node,
    level: 'info',
    destination: { write: (line: string) => void logged.push(JSON.parse(line)) },
  });
  const domain = createDomain({ redis, deps, env: { node: s.node }, log });
  return {
    s,
    redis,
    domain,
    shimCalls,
    logged,
    async exited(name) {
      const r = await s.berth(['run', '-d', '--network', 'none', '--name', name, image, 'true']);
      expect(r.code, r.stderr).toBe(0);
      const id = r.stdout.trim();
      await until('the container to exit', async () => (await s.berth(['wait', id])).code === 0);
      return id;
    },
    async shimTask(ns, id) {
      try {
        await call(s.nc, ShimApi, 'state', { namespace: ns, id }, { node: s.node, timeoutMs: 5_000 });
        return 'ok';
      } catch (err) {
        if (err instanceof BerthError) return err.code;
        throw err;
      }
    },
    stateFile: (ns, id) => join(s.stateRoot, 'runc', ns, id, 'state.json'),
    async killShim() {
      await s.kill('shim', 'SIGKILL');
      await until('NATS to drop the killed shim', async () => {
        try {
          await call(
            s.nc,
            ShimApi,
            'state',
            { namespace: 'probe', id: 'probe' },
            { node: s.node, timeoutMs: 500 },
          );
          return false;
        } catch (err) {
          return err instanceof BerthError && /no responder/.test(err.message);
        }
      });
    },
    passes(ids, asked) {
      const tries = new Map(ids.map((id) => [id, [] as number[]]));
      let n = 0;
      return {
        tries,
        count: () => n,
        async pass() {
          n++;
          const before = ids.map(asked);
          await domain.tasks.reconcile();
          ids.forEach((id, i) => {
            if (asked(id) > (before[i] as number)) tries.get(id)?.push(n);
          });
        },
      };
    },
    async stop() {
      await redis.quit();
      await s.stop();
    },
  };
}
