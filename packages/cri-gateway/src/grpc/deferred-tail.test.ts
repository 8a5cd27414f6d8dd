import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLogger } from '@berth/kit';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { READ_FOLLOWS, TAIL_DELAY_MS } from '../handlers/after-reply.js';
import type { UnaryHandler } from '../handlers/index.js';
import { type CriClient, criClient } from '../testdata/cri-client.js';
import { type BerthCriServer, createBerthCriServer } from './berth-server.js';

// A write a read follows at once (StartContainer, StopContainer, PullImage) leaves its
// bookkeeping until TAIL_DELAY_MS after its reply, so the read is not queued behind it; the
// access line still comes, timed to the reply. Other calls keep theirs right after the reply.

// Lines arrive synchronously (pino calls write as it logs), so what a write's tick logged is known.
const lines: { rpc: string; ms: number; outcome: string }[] = [];
const log = createLogger({
  service: 'cri-gateway',
  node: 'test',
  level: 'info',
  destination: {
    write: (s: string) => {
      const line = JSON.parse(s) as { msg: string; rpc: string; ms: number; outcome: string };
      if (line.msg === 'CRI request') lines.push(line);
    },
  },
});
/** Per socket write of the server: its size, and how many lines there were once its tick ended. */
const writes: { bytes: number; linesAfter: number }[] = [];

// Each handler takes 30 ms, as a real start does at least: the access line's ms shows it.
const slow: UnaryHandler = () => new Promise((resolve) => setTimeout(() => resolve({}), 30));
const handlers: Record<string, UnaryHandler> = {
  'RuntimeService/StartContainer': slow,
  'RuntimeService/RemoveContainer': slow,
};

let root: string;
let net: Server;
let server: BerthCriServer;
let client: CriClient;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'berth-tail-'));
  const socket = join(root, 'cri.sock');
  server = createBerthCriServer({ deps: { log } as never, handlers });
  net = createServer((conn) => {
    const write = conn.write.bind(conn) as (...a: unknown[]) => boolean;
    conn.write = ((...a: unknown[]) => {
      const w = { bytes: (a[0] as Buffer).length, linesAfter: -1 };
      writes.push(w);
      // After everything the write's call stack does (the call's end, if not deferred).
      process.nextTick(() => {
        w.linesAfter = lines.length;
      });
      return write(...a);
    }) as typeof conn.write;
    server.accept(conn);
  });
  await new Promise<void>((resolve) => net.listen(socket, resolve));
  client = criClient(socket);
});

afterAll(async () => {
  client?.close();
  await server?.close(100);
  await new Promise((resolve) => net?.close(resolve));
  await rm(root, { recursive: true, force: true });
});

/** The reply of the call just made: the largest write since `from` (PING and SETTINGS acks are smaller). */
function replyWrite(from: number): { bytes: number; linesAfter: number } {
  const during = writes.slice(from);
  const reply = during.reduce(
    (a, b) => (b.bytes > a.bytes ? b : a),
    during[0] ?? { bytes: 0, linesAfter: -1 },
  );
  return reply;
}

describe('the bookkeeping of a write a read follows', () => {
  it('comes after the reply, timed to it; other calls log in the tick of their reply', async () => {
    expect(READ_FOLLOWS.has('RuntimeService/StartContainer')).toBe(true);
    expect(READ_FOLLOWS.has('RuntimeService/RemoveContainer')).toBe(false);

    let from = writes.length;
    await client.unary(client.runtime, 'RemoveContainer', { container_id: 'c1' });
    // Ended right after the reply's write, in the same tick.
    expect(lines.map((l) => l.rpc)).toEqual(['RuntimeService/RemoveContainer']);
    expect(replyWrite(from).linesAfter).toBe(1);

    from = writes.length;
    const t0 = performance.now();
    await client.unary(client.runtime, 'StartContainer', { container_id: 'c1' });
    const replied = performance.now();
    // Not in the reply's tick: the line comes TAIL_DELAY_MS later.
    expect(replyWrite(from).linesAfter).toBe(1);
    await vi.waitFor(() => expect(lines).toHaveLength(2), { timeout: 2000, interval: TAIL_DELAY_MS });
    const line = lines[1];
    expect(line).toMatchObject({ rpc: 'RuntimeService/StartContainer', outcome: 'OK' });
    // Its duration is the call's (the 30 ms handler), measured to the reply, not to the line.
    expect(line?.ms).toBeGreaterThanOrEqual(29);
    expect(line?.ms).toBeLessThanOrEqual(replied - t0 + 1);
  });
});
