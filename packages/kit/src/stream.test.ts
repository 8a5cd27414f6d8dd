import { createHash } from 'node:crypto';
import { BerthError, Code } from '@berth/api';
import { startNats } from '@berth/testing';
import type { NatsConnection } from 'nats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectNats } from './nats.js';
import { encodeFrame, FrameKind, type NatsStream, openStream, type StreamOptions } from './stream.js';

// The stream protocol between two NATS connections of a real nats-server, as between a shim and
// a CLI on other nodes: credit keeps both ends bounded, a slow reader loses nothing, a gap or a
// silent peer is an error.

let nats: Awaited<ReturnType<typeof startNats>>;
let producerNc: NatsConnection;
let readerNc: NatsConnection;

beforeAll(async () => {
  nats = await startNats({ jetstream: false });
  [producerNc, readerNc] = await Promise.all([
    connectNats({ url: nats.url, name: 'stream-producer' }),
    connectNats({ url: nats.url, name: 'stream-reader' }),
  ]);
});

afterAll(async () => {
  await Promise.all([producerNc?.close(), readerNc?.close()]);
  await nats?.stop();
});

/**
 * A reader's end and a producer's end connected to each other, as `logs`/`attach` open them: there
 * the request (after the reader's SUB on the same connection) and the reply (after the
 * producer's) order each subscription before the first frame; here a flush of each does.
 */
async function pair(
  reader: Partial<StreamOptions> = {},
  producer: Partial<StreamOptions> = {},
  nc: NatsConnection = producerNc,
): Promise<{ r: NatsStream; p: NatsStream }> {
  const r = openStream(readerNc, { what: 'test stream', ...reader });
  const p = openStream(nc, { what: 'test stream', ...producer });
  await Promise.all([readerNc.flush(), nc.flush()]);
  p.connect(r.local);
  r.connect(p.local);
  return { r, p };
}

/** Polls a condition of the streams' state until it holds (bounded). */
async function until(what: string, cond: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

async function failureOf(p: Promise<unknown>): Promise<BerthError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(BerthError);
  return err as BerthError;
}

describe('flow control', () => {
  it('pauses the producer while a slow reader reads nothing, and loses no line', async () => {
    // No heartbeat during the test: it would carry a pending acknowledgement mid-stall.
    const { r, p } = await pair({ window: 8, heartbeatMs: 60_000 });
    const lines = 600;
    let written = 0;
    const producing = (async () => {
      for (let i = 0; i < lines; i++) {
        await p.write(Buffer.from(`line ${i}\n`), 3);
        written++;
      }
      await p.end();
    })();
    const got: string[] = [];
    const it = r.chunks();
    for (let i = 0; i < lines; i++) {
      if (i % 150 === 0) {
        // The reader stalls: the producer stops once the window is full, nothing piles up. Once
        // every frame sent arrived and every acknowledgement sent arrived, nothing is on its way.
        await until('the window to fill', () => {
          const [pc, rc] = [p.counters(), r.counters()];
          return p.inFlight() === 8 && pc.sent === rc.received && pc.peerAcked === rc.ackSent;
        });
        expect(r.buffered()).toBeLessThanOrEqual(8);
        const before = written;
        await new Promise((res) => setImmediate(res));
        expect(written).toBe(before);
        expect(p.inFlight()).toBe(8);
      }
      const n = await it.next();
      expect(n.done).toBe(false);
      if (!n.done) {
        expect(n.value.channel).toBe(3);
        got.push(Buffer.from(n.value.data).toString());
      }
    }
    expect((await it.next()).done).toBe(true);
    await producing;
    expect(got).toEqual(Array.from({ length: lines }, (_, i) => `line ${i}\n`));
    expect(p.peakInFlight()).toBeLessThanOrEqual(8);
    p.close();
    r.close();
  });

  it('moves 8 MiB in frames of at most maxFrameBytes with at most `window` in flight', async () => {
    const { r, p } = await pair({ window: 4 }, { maxFrameBytes: 16 * 1024 });
    const data = Buffer.alloc(8 * 1024 * 1024);
    for (let i = 0; i < data.length; i += 4) data.writeUInt32BE(i, i);
    const producing = (async () => {
      await p.write(data, 1);
      await p.end();
    })();
    const h = createHash('sha256');
    let frames = 0;
    let peakBuffered = 0;
    for await (const c of r.chunks()) {
      expect(c.data.length).toBeLessThanOrEqual(16 * 1024);
      peakBuffered = Math.max(peakBuffered, r.buffered());
      h.update(c.data);
      frames++;
    }
    await producing;
    expect(h.digest('hex')).toBe(createHash('sha256').update(data).digest('hex'));
    expect(frames).toBe(512);
    expect(p.peakInFlight()).toBeLessThanOrEqual(4);
    expect(peakBuffered).toBeLessThanOrEqual(4);
    p.close();
  });

  it('carries the other direction (stdin) with its own window and end', async () => {
    const { r, p } = await pair({}, { window: 2 });
    const sending = (async () => {
      for (let i = 0; i < 50; i++) await r.write(Buffer.from(`in ${i};`), 0);
      await r.end();
    })();
    let text = '';
    for await (const c of p.chunks()) text += Buffer.from(c.data).toString();
    await sending;
    expect(text).toBe(Array.from({ length: 50 }, (_, i) => `in ${i};`).join(''));
    expect(r.peakInFlight()).toBeLessThanOrEqual(2);
    p.close();
    r.close();
  });
});

describe('ends and failures', () => {
  it("hands over the data sent before an error frame, then the producer's error", async () => {
    const { r, p } = await pair();
    await p.write(Buffer.from('before'), 1);
    p.fail(new BerthError(Code.NOT_FOUND, 'container "x" not found'));
    const got: string[] = [];
    const err = await failureOf(
      (async () => {
        for await (const c of r.chunks()) got.push(Buffer.from(c.data).toString());
      })(),
    );
    expect(got).toEqual(['before']);
    expect(err.code).toBe(Code.NOT_FOUND);
    expect(err.message).toBe('container "x" not found');
  });

  it('stops a producer blocked on credit when the reader closes', async () => {
    const { r, p } = await pair({ window: 1 });
    await p.write(Buffer.from('a'));
    const blocked = p.write(Buffer.from('b'));
    r.close();
    const err = await failureOf(blocked);
    expect(err.code).toBe(Code.CANCELLED);
    expect(p.signal.aborted).toBe(true);
  });

  it('fails the reader with UNAVAILABLE when the producer goes silent (its connection dies)', async () => {
    const doomed = await connectNats({ url: nats.url, name: 'stream-doomed' });
    const { r } = await pair({ heartbeatMs: 50, deadAfterMs: 400 }, { heartbeatMs: 50 }, doomed);
    const reading = (async () => {
      for await (const _ of r.chunks()) {
        // nothing is sent
      }
    })();
    await doomed.close();
    const err = await failureOf(reading);
    expect(err.code).toBe(Code.UNAVAILABLE);
    expect(err.message).toMatch(/^test stream: the other end sent nothing for 400 ms/);
  });

  it('keeps a quiet stream alive with heartbeats', async () => {
    // Periods with room for a loaded machine's stalls (a missed beat is not a dead peer).
    const { r, p } = await pair({ heartbeatMs: 50, deadAfterMs: 500 }, { heartbeatMs: 50, deadAfterMs: 500 });
    const t0 = Date.now();
    await until('several dead-peer periods to pass', () => Date.now() - t0 > 1500);
    expect(r.signal.aborted).toBe(false);
    expect(p.signal.aborted).toBe(false);
    await p.write(Buffer.from('late'), 1);
    await p.end();
    const got: string[] = [];
    for await (const c of r.chunks()) got.push(Buffer.from(c.data).toString());
    expect(got).toEqual(['late']);
  });

  it('reports a gap in the sequence as DATA_LOSS, and more than the window as a protocol error', async () => {
    const gap = openStream(readerNc, { what: 'gap stream', window: 4 });
    gap.connect({ inbox: '_INBOX.nobody', window: 1 });
    await readerNc.flush();
    producerNc.publish(gap.inbox, encodeFrame(FrameKind.data, { seq: 1, payload: Buffer.from('one') }));
    producerNc.publish(gap.inbox, encodeFrame(FrameKind.data, { seq: 3, payload: Buffer.from('three') }));
    const got: string[] = [];
    const err = await failureOf(
      (async () => {
        for await (const c of gap.chunks()) got.push(Buffer.from(c.data).toString());
      })(),
    );
    expect(got).toEqual(['one']);
    expect(err.code).toBe(Code.DATA_LOSS);
    expect(err.message).toBe('gap stream: frame 3 came after 1: frames were lost');

    // Frames lost at the end of a burst: the next heartbeat names the last one sent.
    const tail = openStream(readerNc, { what: 'tail stream', window: 4 });
    tail.connect({ inbox: '_INBOX.nobody', window: 1 });
    await readerNc.flush();
    producerNc.publish(tail.inbox, encodeFrame(FrameKind.data, { seq: 1 }));
    producerNc.publish(tail.inbox, encodeFrame(FrameKind.heartbeat, { seq: 3 }));
    const lost = await failureOf(
      (async () => {
        for await (const _ of tail.chunks()) {
          // drain
        }
      })(),
    );
    expect(lost.code).toBe(Code.DATA_LOSS);
    expect(lost.message).toBe('tail stream: frames 2..3 were sent but never arrived');

    const flood = openStream(readerNc, { what: 'flood stream', window: 2 });
    flood.connect({ inbox: '_INBOX.nobody', window: 1 });
    await readerNc.flush();
    for (let seq = 1; seq <= 3; seq++) producerNc.publish(flood.inbox, encodeFrame(FrameKind.data, { seq }));
    const flooded = await failureOf(
      (async () => {
        await until('the flood to arrive', () => flood.signal.aborted);
        for await (const _ of flood.chunks()) {
          // drain
        }
      })(),
    );
    expect(flooded.code).toBe(Code.INTERNAL);
    expect(flooded.message).toBe('flood stream: protocol error: more than 2 frames unacknowledged');
  });
});
