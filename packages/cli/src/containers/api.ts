import { join } from 'node:path';
import {
  BerthError,
  Code,
  type ContainerInfo,
  type ExitStatus,
  type ImageRecord,
  TaskApi,
  type TaskExit,
  TaskTopic,
} from '@berth/api';
import { type Client, client } from '@berth/kit/client';
import { subscribeEvents } from '@berth/kit/events';
import { type ExitWaiter, exitWaiter } from '@berth/kit/exit-waiter';
import { hostLayout } from '@berth/kit/layout';
import type { CliContext } from '../context.js';
import { image } from '../images/api.js';

/** The task-service's typed client. */
export type TaskClient = Client<typeof TaskApi>;

/** A task-service client in the CLI's namespace. */
export async function tasks(ctx: CliContext): Promise<TaskClient> {
  return client(await ctx.nats(), TaskApi, { namespace: ctx.namespace });
}

/**
 * Makes sure the image is on the node (this one by default): get it, or pull it there when it is
 * missing (as `docker run`).
 */
export async function ensureImage(
  ctx: CliContext,
  ref: string,
  node: string = ctx.config.nodeId,
): Promise<ImageRecord> {
  try {
    return await image(ctx, 'get', { name: ref }, node);
  } catch (err) {
    if (!(err instanceof BerthError) || err.code !== Code.NOT_FOUND) throw err;
  }
  return pullMissing(ctx, ref, node);
}

/** Pulls an image the node was found not to have, saying so first (as `docker run`). */
export async function pullMissing(
  ctx: CliContext,
  ref: string,
  node: string = ctx.config.nodeId,
): Promise<ImageRecord> {
  const where = node === ctx.config.nodeId ? 'locally' : `on node "${node}"`;
  ctx.err.write(`Unable to find image '${ref}' ${where}, pulling\n`);
  return (await image(ctx, 'pull', { ref }, node)).image;
}

/** The CRI log file of a container: its task's, its configured one, or the node's default. */
export function logPathOf(
  ctx: CliContext,
  info: {
    container: Pick<ContainerInfo['container'], 'id' | 'namespace' | 'io'>;
    task?: Pick<NonNullable<ContainerInfo['task']>, 'logPath'> | undefined;
  },
): string {
  return (
    info.task?.logPath ??
    info.container.io.logPath ??
    join(hostLayout(ctx.config).containerLogs, info.container.namespace, `${info.container.id}.log`)
  );
}

/**
 * Starts waiting for a process of container `id` to exit (the kit's waiter, shared with the SDK).
 * It asks nothing until `check()` is called: the CLI starts waiting before the task or exec
 * exists, so none of its exits is missed, and calls `check()` once the process started.
 */
export async function exitWatcher(
  ctx: CliContext,
  id: string,
  execId?: string,
  namespace: string = ctx.namespace,
): Promise<ExitWaiter> {
  return exitWaiter(await ctx.nats(), { namespace, id, ...(execId ? { execId } : {}), checkNow: false });
}

/** Exits of a namespace's tasks seen before the caller knows which container it waits for. */
export interface EarlyExits {
  /** The exit of container `id`'s task: one already seen, or the next one while listening. */
  of(id: string): Promise<ExitStatus>;
  close(): void;
}

/** Containers whose exits an EarlyExits keeps at most (the oldest go first). */
const EARLY_EXITS_KEPT = 1024;

/**
 * Listens to the namespace's task exits before a call that makes and starts a container whose id
 * only its reply tells (`run-container`): the container's exit can come before that reply, and
 * the exit waiter made once the id is known subscribes after it. No flush is needed: NATS handles
 * a connection's subscription before the request sent after it, and the exit cannot be published
 * before the request arrived. Keep it until the id's own waiter listens, then close it.
 */
export async function earlyExits(ctx: CliContext, namespace: string = ctx.namespace): Promise<EarlyExits> {
  const seen = new Map<string, ExitStatus>();
  const waiting = new Map<string, (e: ExitStatus) => void>();
  const sub = subscribeEvents(await ctx.nats(), TaskTopic.taskExit, (env) => {
    const e = env.event as TaskExit;
    if (e.namespace !== namespace || e.execId) return;
    const exit: ExitStatus = {
      exitCode: e.exitCode,
      exitedAt: e.exitedAt,
      ...(e.reason ? { reason: e.reason } : {}),
    };
    const wake = waiting.get(e.id);
    if (wake) return wake(exit);
    if (seen.has(e.id)) return;
    if (seen.size >= EARLY_EXITS_KEPT) seen.delete(seen.keys().next().value as string);
    seen.set(e.id, exit);
  });
  return {
    of: (id) => {
      const exit = seen.get(id);
      return exit ? Promise.resolve(exit) : new Promise((resolve) => waiting.set(id, resolve));
    },
    close: () => sub.unsubscribe(),
  };
}
