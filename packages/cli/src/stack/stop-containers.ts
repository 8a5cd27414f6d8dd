import { ShimApi, type ShimListRequest } from '@berth/api';
import { call } from '@berth/kit/client';
import { collectAll } from '@berth/kit/paging';
import { stopOne } from '../containers/stop.js';
import type { CliContext } from '../context.js';

/**
 * Stops every live container on this node, in every namespace (`berth down --containers`): the
 * node's shim lists what it supervises, and each container is stopped through task-service like
 * `berth stop -t <seconds>`, so its exit is recorded before the services go away. Returns how many
 * could not be stopped (each reported on stderr).
 */
export async function stopNodeContainers(ctx: CliContext, seconds: number): Promise<number> {
  const nc = await ctx.nats();
  const page = (input: ShimListRequest) => call(nc, ShimApi, 'list', input, { node: ctx.config.nodeId });
  const tasks = await collectAll(page, {}, 'tasks');
  // Exec processes end with their container; only the containers' own tasks are stopped.
  const live = tasks.filter(
    (t) =>
      t.execId === undefined && (t.status === 'running' || t.status === 'paused' || t.status === 'created'),
  );
  let failed = 0;
  await Promise.all(
    live.map(async (t) => {
      try {
        await stopOne(t.id, ctx, { seconds, namespace: t.namespace });
        ctx.out.write(`container ${t.namespace}/${t.id.slice(0, 12)}: stopped\n`);
      } catch (err) {
        failed++;
        ctx.err.write(
          `berth down: container ${t.namespace}/${t.id.slice(0, 12)}: ${(err as Error).message}\n`,
        );
      }
    }),
  );
  return failed;
}
