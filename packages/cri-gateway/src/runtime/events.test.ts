import { readFileSync } from 'node:fs';
import { BerthError, Code, ImageTopic, TaskTopic } from '@berth/api';
import { subjectMatches } from '@berth/testing';
import { describe, expect, it } from 'vitest';
import { CRI_NAMESPACE } from '../images/ports.js';
import type { ContainerRuntime } from './containers.js';
import { containerEvents, type EventSource } from './events.js';
import type { PodRuntime } from './pods.js';

// The patterns are literals in gateway.ts (kit's bus-roles test reads them there too, against the
// gateway's NATS role): read them as written.
const gateway = readFileSync(new URL('../gateway.ts', import.meta.url), 'utf8');
const patterns = [...gateway.matchAll(/\bsubscribeEvents\(\s*[\w.]+\s*,\s*'([^']+)'/g)].map(
  (m) => m[1] ?? '',
);

describe('the events the gateway subscribes to', () => {
  it('are every task, container and image topic, and not the snapshot or pull-progress ones', () => {
    expect(patterns.sort()).toEqual(['containers.*', 'images.*', 'tasks.*']);
    for (const topic of [...Object.values(TaskTopic), ...Object.values(ImageTopic)]) {
      expect(
        patterns.some((p) => subjectMatches(p, topic)),
        topic,
      ).toBe(true);
    }
    for (const topic of [
      'snapshots.prepare',
      'snapshots.remove',
      'images.pull.progress.p1',
      'leases.delete',
    ]) {
      expect(
        patterns.some((p) => subjectMatches(p, topic)),
        topic,
      ).toBe(false);
    }
  });
});

describe('containerEvents', () => {
  it('skips (and logs) an event whose pod cannot be read for now, and goes on with the next', async () => {
    const pod = 'a'.repeat(64);
    let reads = 0;
    const pods = {
      list: async () => [],
      get: async (id: string) => ({ id }),
      status: async (id: string) => {
        // The first read fails as a restarting task-service makes it fail; the next one answers.
        if (++reads === 1) throw new BerthError(Code.UNAVAILABLE, 'task-service: no responders');
        return { status: { id, state: 'SANDBOX_NOTREADY' }, containers: [] };
      },
    } as unknown as PodRuntime;
    const containers = { list: async () => [] } as unknown as ContainerRuntime;
    type Emit = Parameters<Parameters<EventSource>[0]>[0];
    let emit: ((e: Emit) => void) | undefined;
    const source: EventSource = (onEvent) => {
      emit = onEvent;
      return () => undefined;
    };
    const warned: unknown[] = [];
    const ac = new AbortController();
    const stream = containerEvents({
      source,
      pods,
      containers,
      signal: ac.signal,
      log: { warn: (o: unknown) => warned.push(o) },
    });
    const first = stream.next();
    // The stream subscribes before it reads anything: both events wait in its queue.
    await until(() => emit !== undefined);
    const at = new Date().toISOString();
    emit?.({
      topic: TaskTopic.taskStart,
      namespace: CRI_NAMESPACE,
      timestamp: at,
      event: { id: pod, pid: 1 },
    });
    emit?.({
      topic: TaskTopic.taskExit,
      namespace: CRI_NAMESPACE,
      timestamp: at,
      event: { id: pod, pid: 1 },
    });
    const got = (await first).value as { container_id: string; container_event_type: string };
    expect(got.container_id).toBe(pod);
    expect(got.container_event_type).toBe('CONTAINER_STOPPED_EVENT');
    expect(warned).toEqual([{ err: 'task-service: no responders', id: pod, topic: TaskTopic.taskStart }]);
    ac.abort();
    await stream.return(undefined);
  });
});

/** Resolves once `ok()` holds, asking on each turn of the event loop (at most 2 s). */
async function until(ok: () => boolean): Promise<void> {
  const end = Date.now() + 2_000;
  while (!ok()) {
    if (Date.now() > end) throw new Error('condition not met within 2 s');
    await new Promise((r) => setImmediate(r));
  }
}
