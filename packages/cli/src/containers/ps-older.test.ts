// `berth ps` against a task-service older than the CLI: one without list-container-summaries.
// The older service is a plain NATS responder of list-containers only, as such a build answers.
import { type ContainerInfo, subjectOf, TaskApi } from '@berth/api';
import { startNats, type TestServer } from '@berth/testing';
import { connect, JSONCodec, type NatsConnection, type Subscription } from 'nats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CliContext } from '../context.js';
import { runningContainer } from '../testdata/running-container.js';
import { psCommand } from './commands.js';

const json = JSONCodec<unknown>();
let nats: TestServer;
let cli: NatsConnection;
let service: NatsConnection;

beforeAll(async () => {
  nats = await startNats({ jetstream: false });
  [cli, service] = await Promise.all([connect({ servers: nats.url }), connect({ servers: nats.url })]);
});
afterAll(async () => {
  await Promise.all([cli?.close(), service?.close()]);
  await nats?.stop();
});

const ID = 'ab'.repeat(32);
const info: ContainerInfo = runningContainer(ID, {
  createdAt: new Date(Date.now() - 60_000).toISOString(),
  startedAt: new Date().toISOString(),
});

/** What psCommand uses of a CLI context: NATS, the node id, and where it writes. */
function context(): { ctx: CliContext; out: () => string } {
  let text = '';
  const sink = {
    write: (s: string) => {
      text += s;
      return true;
    },
  };
  const ctx = { nats: async () => cli, config: { nodeId: 'n1' }, out: sink, err: sink };
  return { ctx: ctx as unknown as CliContext, out: () => text };
}

/** Serves list-containers as an older task-service would, counting the requests. */
function olderService(): { sub: Subscription; asked: () => number } {
  let asked = 0;
  const sub = service.subscribe(subjectOf(TaskApi, 'list-containers'), {
    callback: (_err, msg) => {
      asked++;
      msg.respond(json.encode({ containers: [info] }));
    },
  });
  return { sub, asked: () => asked };
}

describe('ps against a task-service without list-container-summaries', () => {
  it('lists the containers from list-containers, summarized here', async () => {
    const older = olderService();
    await service.flush();
    try {
      const { ctx, out } = context();
      expect(await psCommand(false, false, [], ctx)).toBe(0);
      const lines = out().trim().split('\n');
      expect(lines).toHaveLength(2);
      expect(lines[1]).toMatch(/^abababababab +docker\.io\/library\/busybox:1\.36 +"sleep 300" .* n1 +web$/);
      expect(older.asked()).toBe(1);
    } finally {
      older.sub.unsubscribe();
    }
  });

  it('reports a task-service that answers neither as unavailable, naming the summaries', async () => {
    const { ctx } = context();
    await expect(psCommand(true, true, [], ctx)).rejects.toThrow(
      /task-service is unavailable: no responder for "list-container-summaries"/,
    );
  });
});
