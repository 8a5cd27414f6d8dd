import { join } from 'node:path';
import {
  BerthError,
  Code,
  type ContainerInfo,
  DEFAULT_NAMESPACE,
  type ExitStatus,
  type ImageRecord,
  Service,
  type TaskExit,
} from '@berth/api';
import { call, hostLayout, subscribeEvents } from '@berth/kit';
import { type TaskClient, taskClient } from '@berth/task-service/client';
import type { CliContext } from '../context.js';

/** The namespace the CLI works in (BERTH_NAMESPACE, else "default"). */
export function namespaceOf(): string {
  return process.env.BERTH_NAMESPACE || DEFAULT_NAMESPACE;
}

/** A task-service client in the CLI's namespace. */
export async function tasks(ctx: CliContext): Promise<TaskClient> {
  return taskClient(await ctx.nats(), namespaceOf());
}

/** Makes sure the image is on this node: get it, or pull it when it is missing (as `docker run`). */
export async function ensureImage(ctx: CliContext, ref: string): Promise<ImageRecord> {
  const nc = await ctx.nats();
  const opts = { node: ctx.config.nodeId, namespace: namespaceOf() };
  try {
    return await call<ImageRecord>(nc, Service.image, 'get', { name: ref }, { ...opts, timeoutMs: 10_000 });
  } catch (err) {
    if (!(err instanceof BerthError) || err.code !== Code.NOT_FOUND) throw err;
  }
  ctx.err.write(`Unable to find image '${ref}' locally, pulling\n`);
  const reply = await call<{ image: ImageRecord }>(
    nc,
    Service.image,
    'pull',
    { ref },
    {
      ...opts,
      timeoutMs: 30 * 60_000,
    },
  );
  return reply.image;
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
  const client = taskClient(nc, ns);
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
    client
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
