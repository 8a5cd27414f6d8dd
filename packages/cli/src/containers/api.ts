import { join } from 'node:path';
import {
  BerthError,
  Code,
  type ContainerInfo,
  type ExitStatus,
  type ImageRecord,
  TaskApi,
  type TaskExit,
} from '@berth/api';
import { type Client, client } from '@berth/kit/client';
import { subscribeEvents } from '@berth/kit/events';
import { hostLayout } from '@berth/kit/layout';
import { type CliContext, namespaceOf } from '../context.js';
import { image } from '../images/api.js';

export { namespaceOf };

/** The task-service's typed client. */
export type TaskClient = Client<typeof TaskApi>;

/** A task-service client in the CLI's namespace. */
export async function tasks(ctx: CliContext): Promise<TaskClient> {
  return client(await ctx.nats(), TaskApi, { namespace: namespaceOf() });
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
  const where = node === ctx.config.nodeId ? 'locally' : `on node "${node}"`;
  ctx.err.write(`Unable to find image '${ref}' ${where}, pulling\n`);
  return (await image(ctx, 'pull', { ref }, node)).image;
}

/** The CRI log file of a container: its task's, its configured one, or the node's default. */
export function logPathOf(ctx: CliContext, info: ContainerInfo): string {
  return (
    info.task?.logPath ??
    info.container.io.logPath ??
    join(hostLayout(ctx.config).containerLogs, info.container.namespace, `${info.container.id}.log`)
  );
}

/**
 * Waits for a process to exit without a lost wakeup: subscribe to `tasks.exit` first, then ask for
 * the state; the state is asked again now and then so a lost event or a restarted task-service
 * never leaves the CLI hanging. Call `ready` (returned) after the subscription exists.
 */
export async function exitWatcher(
  ctx: CliContext,
  id: string,
  execId?: string,
  ns: string = namespaceOf(),
): Promise<{ exited: Promise<ExitStatus>; check: () => void; close: () => void }> {
  const nc = await ctx.nats();
  const taskService = client(nc, TaskApi, { namespace: ns });
  let resolve!: (e: ExitStatus) => void;
  const exited = new Promise<ExitStatus>((r) => {
    resolve = r;
  });
  const sub = subscribeEvents(nc, 'tasks.exit', (env) => {
    const e = env.event as TaskExit;
    if (e.namespace === ns && e.id === id && (e.execId ?? undefined) === execId) {
      resolve({ exitCode: e.exitCode, exitedAt: e.exitedAt, ...(e.reason ? { reason: e.reason } : {}) });
    }
  });
  await nc.flush();
  let checking = false;
  const check = () => {
    if (checking) return;
    checking = true;
    taskService
      .state({ id, ...(execId ? { execId } : {}) })
      .then((s) => {
        if (s.status === 'stopped' && s.exitCode !== undefined) {
          resolve({
            exitCode: s.exitCode,
            exitedAt: s.exitedAt ?? '',
            ...(s.reason ? { reason: s.reason } : {}),
          });
        }
      })
      .catch(() => undefined)
      .finally(() => {
        checking = false;
      });
  };
  const timer = setInterval(check, 1000);
  void exited.finally(() => clearInterval(timer));
  return {
    exited,
    check,
    close: () => {
      clearInterval(timer);
      sub.unsubscribe();
    },
  };
}
