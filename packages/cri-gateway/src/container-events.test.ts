import type { ClientReadableStream } from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { createCtr, rpc, runPod, until, usePodStack } from './testdata/pod-fixtures.js';

// GetContainerEvents as the kubelet's evented PLEG reads it: each event is the whole pod (its
// sandbox status and every container's status), and one container's events come in the order
// they happened, each showing at least the state its type says.

const stack = usePodStack();

type Status = { id: string; state: string; exit_code: number; started_at: string; finished_at: string };
type Ev = {
  container_id: string;
  container_event_type: string;
  pod_sandbox_status: { id: string; state: string; metadata: { name: string; uid: string } | null } | null;
  containers_statuses: Status[];
};

const PODS = 4;
const ROUNDS = 20;
const CREATED = 'CONTAINER_CREATED_EVENT';
const STARTED = 'CONTAINER_STARTED_EVENT';
const STOPPED = 'CONTAINER_STOPPED_EVENT';
const DELETED = 'CONTAINER_DELETED_EVENT';

/** The least state an event of each type may show for its own container. */
const STATES: Record<string, string[]> = {
  [CREATED]: ['CONTAINER_CREATED', 'CONTAINER_RUNNING', 'CONTAINER_EXITED'],
  [STARTED]: ['CONTAINER_RUNNING', 'CONTAINER_EXITED'],
  [STOPPED]: ['CONTAINER_EXITED'],
};

function subscribe(): { got: Ev[]; close: () => Promise<number> } {
  const client = stack().client.runtime;
  const open = (client as unknown as Record<string, (r: unknown) => ClientReadableStream<Ev>>)
    .GetContainerEvents;
  const stream = open?.call(client, {});
  if (!stream) throw new Error('no GetContainerEvents');
  const got: Ev[] = [];
  stream.on('data', (e: Ev) => got.push(e));
  stream.on('error', () => undefined);
  const ended = new Promise<number>((r) => stream.on('status', (st: { code: number }) => r(st.code)));
  return {
    got,
    close: () => {
      stream.cancel();
      return ended;
    },
  };
}

describe('GetContainerEvents', () => {
  it('sends the whole pod with every event, each container in order, for containers that exit at once', async () => {
    const { got, close } = subscribe();
    const of = (id: string) => got.filter((e) => e.container_id === id);
    const pods = async (name: string) => {
      const pod = await runPod(name);
      // The pod's own create proves the stream listened before anything below happened.
      await until("the pod's created event", () => of(pod).some((e) => e.container_event_type === CREATED));
      const steady = await createCtr(pod, name, 'steady');
      await rpc('StartContainer', { container_id: steady });
      const podOk = (e: Ev) => {
        expect(e.pod_sandbox_status?.id, e.container_event_type).toBe(pod);
        expect(e.pod_sandbox_status?.metadata).toMatchObject({ name, uid: `uid-${name}` });
      };
      // The shim announces the exit, the task-service the start: they race every round, and the
      // exit wins only now and then, so enough rounds (on several pods) that it almost surely
      // does once (runtime/event-order.test.ts builds that order deterministically).
      for (let round = 0; round < ROUNDS; round++) {
        const quick = await createCtr(pod, name, `quick-${round}`, { command: ['sh', '-c', 'exit 3'] });
        await rpc('StartContainer', { container_id: quick });
        await until(`${name} round ${round}: the quick container's start and stop`, () => {
          const types = of(quick).map((e) => e.container_event_type);
          return types.includes(STARTED) && types.includes(STOPPED);
        });
        await rpc('RemoveContainer', { container_id: quick });
        await until(`${name} round ${round}: the quick container's delete`, () =>
          of(quick).some((e) => e.container_event_type === DELETED),
        );
        const events = of(quick);
        expect(
          events.map((e) => e.container_event_type),
          `${name} round ${round}`,
        ).toEqual([CREATED, STARTED, STOPPED, DELETED]);
        for (const e of events.slice(0, 3)) {
          podOk(e);
          expect(e.containers_statuses.map((c) => c.id).sort()).toEqual([quick, steady].sort());
          const own = e.containers_statuses.find((c) => c.id === quick);
          expect(STATES[e.container_event_type], `${e.container_event_type} shows ${own?.state}`).toContain(
            own?.state,
          );
          if (e.container_event_type === STOPPED) {
            expect(own?.exit_code).toBe(3);
            expect(BigInt(own?.started_at ?? '0')).toBeGreaterThan(0n);
          }
          const other = e.containers_statuses.find((c) => c.id === steady);
          expect(other?.state).toBe('CONTAINER_RUNNING');
        }
        const deleted = events[3] as Ev;
        podOk(deleted);
        expect(deleted.pod_sandbox_status?.state).toBe('SANDBOX_READY');
        expect(deleted.containers_statuses.map((c) => [c.id, c.state])).toEqual([
          [steady, 'CONTAINER_RUNNING'],
        ]);
      }
      await rpc('StopPodSandbox', { pod_sandbox_id: pod });
      await rpc('RemovePodSandbox', { pod_sandbox_id: pod });
      // The pod's own delete: the pod as it last was, which the kubelet reads to drop it.
      const gone = await until("the pod's deleted event", () =>
        of(pod).find((e) => e.container_event_type === DELETED),
      );
      podOk(gone);
      expect(gone.pod_sandbox_status?.state).toBe('SANDBOX_NOTREADY');
    };
    // Pods side by side: more rounds in the time, and a busier node, where the exit wins more.
    await Promise.all(Array.from({ length: PODS }, (_, i) => pods(`evented-${i}`)));
    for (const e of got)
      expect(e.pod_sandbox_status, `${e.container_event_type} ${e.container_id}`).not.toBeNull();
    expect(await close()).toBe(1);
  }, 180_000);
});
