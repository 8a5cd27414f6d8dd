// A stand-in task-service for snapshot-service tests: only `claimed-chains`, served over real NATS
// with the real contract (input parsed, reply checked), answering with the chains the test sets.
import { defineService, Scope, Service, TaskApi } from '@berth/api';
import { serveStandIn } from '@berth/kit/stand-in';
import type { NatsConnection } from 'nats';

/** The part of the task-service's contract the snapshot-service calls (GC's container roots). */
export const TaskStandInApi = defineService({
  name: Service.task,
  scope: Scope.cluster,
  ops: { 'claimed-chains': TaskApi.ops['claimed-chains'] },
});

/** A served stand-in: `claimed` are the chains containers on `node` claim, changed freely by tests. */
export interface TaskStandIn {
  claimed: string[];
  stop(): Promise<void>;
}

/**
 * Serves the stand-in on `nc`: it answers for `node` only (another node's containers claim
 * nothing here), so a request that names the wrong node finds no claims and fails its test.
 */
export async function serveTaskStandIn(nc: NatsConnection, node: string): Promise<TaskStandIn> {
  const state: TaskStandIn = { claimed: [], stop: async () => undefined };
  state.stop = await serveStandIn(nc, TaskStandInApi, node, {
    'claimed-chains': async (req) => ({ chainIds: req.node === node ? [...state.claimed] : [] }),
  });
  return state;
}
