import { describe, expect, it } from 'vitest';
import type { toContainerStatus } from './cri-status.js';
import { atLeast, CriEventType, EventOrder } from './event-order.js';

const { created, started, stopped, deleted } = CriEventType;

describe('EventOrder', () => {
  it('sends the start before the stop when the exit arrives first, and drops the late start', () => {
    const order = new EventOrder();
    expect(order.next('c', created)).toEqual([created]);
    expect(order.next('c', stopped)).toEqual([started, stopped]);
    expect(order.next('c', started)).toEqual([]);
    expect(order.next('c', deleted)).toEqual([deleted]);
  });

  it('keeps each container apart, and passes events in order through', () => {
    const order = new EventOrder();
    expect(order.next('a', created)).toEqual([created]);
    expect(order.next('b', created)).toEqual([created]);
    expect(order.next('a', started)).toEqual([started]);
    expect(order.next('a', stopped)).toEqual([stopped]);
    expect(order.next('b', started)).toEqual([started]);
  });

  it('does not invent a start for a container whose create the stream did not see', () => {
    const order = new EventOrder();
    expect(order.next('c', stopped)).toEqual([stopped]);
    expect(order.next('c', started)).toEqual([]);
  });
});

describe('atLeast', () => {
  type Status = ReturnType<typeof toContainerStatus>;
  const createdStatus = {
    id: 'c',
    state: 'CONTAINER_CREATED',
    started_at: '0',
    finished_at: '0',
    exit_code: 0,
    reason: '',
  } as unknown as Status;
  const at = '2026-01-02T03:04:05.000Z';
  const ns = (iso: string) => (BigInt(Date.parse(iso)) * 1_000_000n).toString();

  it('shows a started container running at least', () => {
    const s = atLeast(createdStatus, started, { timestamp: at, event: {} });
    expect(s).toMatchObject({ state: 'CONTAINER_RUNNING', started_at: ns(at) });
  });

  it("shows a stopped container exited with its exit event's code, time and reason", () => {
    const exitedAt = '2026-01-02T03:04:06.000Z';
    const s = atLeast(createdStatus, stopped, { timestamp: at, event: { exitCode: 3, exitedAt } });
    expect(s).toMatchObject({
      state: 'CONTAINER_EXITED',
      exit_code: 3,
      finished_at: ns(exitedAt),
      reason: 'Error',
    });
  });

  it('keeps a state later than the event says', () => {
    const exited = { ...createdStatus, state: 'CONTAINER_EXITED', exit_code: 1 } as Status;
    expect(atLeast(exited, started, { timestamp: at, event: {} })).toBe(exited);
  });
});
