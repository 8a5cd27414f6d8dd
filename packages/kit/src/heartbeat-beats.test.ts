import { headers as natsHeaders } from 'nats';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { answerWithHeartbeats, FIRST_BEAT_MS, HEARTBEAT_HEADER } from './heartbeat.js';

/** A request asking for a beat a second; `respond` records each beat, and throws when `closed`. */
function request(closed = false) {
  const beats: number[] = [];
  const headers = natsHeaders();
  headers.set(HEARTBEAT_HEADER, '1000');
  const respond = () => {
    beats.push(Date.now());
    if (closed) throw new Error('connection closed');
    return true;
  };
  return { beats, msg: { headers, reply: '_INBOX.test', respond } };
}

const answerer = () => ({ ok: vi.fn(), error: vi.fn() });

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

describe('the beats of a long call', () => {
  it('sends none for a call answered before the first beat is due, then or later', () => {
    const { beats, msg } = request();
    const a = answerWithHeartbeats(answerer(), msg, 'node/instance', () => undefined);
    vi.advanceTimersByTime(FIRST_BEAT_MS - 1);
    a.ok(new Uint8Array(0));
    vi.advanceTimersByTime(5_000);
    expect(beats).toEqual([]);
  });

  it('sends the first after FIRST_BEAT_MS and then one per interval until the answer', () => {
    const { beats, msg } = request();
    const start = Date.now();
    const a = answerWithHeartbeats(answerer(), msg, 'node/instance', () => undefined);
    vi.advanceTimersByTime(FIRST_BEAT_MS + 2_000);
    a.error(new Error('done') as never);
    vi.advanceTimersByTime(5_000);
    expect(beats.map((t) => t - start)).toEqual([
      FIRST_BEAT_MS,
      FIRST_BEAT_MS + 1_000,
      FIRST_BEAT_MS + 2_000,
    ]);
  });

  it('stops at a first beat that cannot be sent: one send, one report', () => {
    const { beats, msg } = request(true);
    const onSendError = vi.fn();
    answerWithHeartbeats(answerer(), msg, 'node/instance', onSendError);
    vi.advanceTimersByTime(10_000);
    expect(beats).toHaveLength(1);
    expect(onSendError).toHaveBeenCalledTimes(1);
  });
});
