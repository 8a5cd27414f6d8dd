import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { SupervisorState } from '../context.js';
import { type ControlReply, controlRequest, listenControl } from './control.js';

const dir = mkdtempSync(join(tmpdir(), 'berth-control-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const state: SupervisorState = {
  pid: 1,
  natsUrl: 'nats://x',
  redisUrl: 'redis://x',
  embedded: false,
  nodeId: 'n',
  startedAt: 'now',
  socket: '',
  children: [],
};

describe('control socket', () => {
  it('is private, answers status, and streams down progress until done', async () => {
    const path = join(dir, 'sup.sock');
    const server = await listenControl(path, {
      status: () => state,
      down: async (progress) => {
        progress({ type: 'progress', name: 'shim', replica: 1, pid: 7, result: 'stopped' });
      },
    });
    try {
      expect(statSync(path).mode & 0o777).toBe(0o600);
      const st = await controlRequest(path, { op: 'status' }, { timeoutMs: 2000 });
      expect(st).toEqual([{ type: 'status', state }]);
      const seen: ControlReply[] = [];
      const down = await controlRequest(
        path,
        { op: 'down' },
        { timeoutMs: 2000, onLine: (r) => seen.push(r) },
      );
      expect(down).toEqual([
        { type: 'progress', name: 'shim', replica: 1, pid: 7, result: 'stopped' },
        { type: 'done' },
      ]);
      expect(seen).toEqual(down);
    } finally {
      server.close();
    }
  });

  it('fails with UNAVAILABLE when nothing listens', async () => {
    await expect(
      controlRequest(join(dir, 'none.sock'), { op: 'status' }, { timeoutMs: 500 }),
    ).rejects.toMatchObject({
      code: 'UNAVAILABLE',
    });
  });
});
