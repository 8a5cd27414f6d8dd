// The supervisor's RESP readiness probe against a real redis-server: it must read the pid of the
// server that answers, and answer undefined (never throw) for every way a start-up can fail.
import { createServer } from 'node:net';
import { freePort, startRedis, type TestServer } from '@berth/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseReplies, redisServerPid } from './redis-probe.js';

let open: TestServer;
let locked: TestServer;

beforeAll(async () => {
  [open, locked] = await Promise.all([startRedis({ appendonly: false }), startRedis({ password: 'pa ss' })]);
});
afterAll(async () => {
  await Promise.all([open?.stop(), locked?.stop()]);
});

describe('redisServerPid', () => {
  it('reads the pid of the redis-server that answers', async () => {
    expect(await redisServerPid(open.port)).toBe(open.proc.pid);
  });

  it('authenticates first when the server requires a password', async () => {
    expect(await redisServerPid(locked.port, 'pa ss')).toBe(locked.proc.pid);
  });

  it('is undefined with a wrong or missing password', async () => {
    expect(await redisServerPid(locked.port, 'wrong')).toBeUndefined();
    expect(await redisServerPid(locked.port)).toBeUndefined();
  });

  it('is undefined when nothing listens on the port', async () => {
    expect(await redisServerPid(await freePort())).toBeUndefined();
  });

  it('is undefined when something else answers, or nothing answers in time', async () => {
    const srv = createServer((s) => {
      s.on('data', () => s.write('HTTP/1.1 400 Bad Request\r\n\r\n'));
    });
    const mute = createServer(() => undefined);
    await Promise.all([
      new Promise<void>((r) => srv.listen(0, '127.0.0.1', r)),
      new Promise<void>((r) => mute.listen(0, '127.0.0.1', r)),
    ]);
    try {
      const port = (s: typeof srv) => (s.address() as { port: number }).port;
      expect(await redisServerPid(port(srv))).toBeUndefined();
      expect(await redisServerPid(port(mute), undefined, 200)).toBeUndefined();
    } finally {
      srv.close();
      mute.close();
    }
  });
});

describe('parseReplies', () => {
  it('takes only whole replies and says how many bytes they used', () => {
    const whole = Buffer.from('+OK\r\n$5\r\nab\r\nc\r\n-ERR x\r\n:7\r\n');
    expect(parseReplies(whole)).toEqual({
      replies: [
        { error: false, text: 'OK' },
        { error: false, text: 'ab\r\nc' },
        { error: true, text: 'ERR x' },
        { error: false, text: '7' },
      ],
      used: whole.length,
    });
    // A bulk string cut mid-body waits for the rest.
    expect(parseReplies(Buffer.from('+OK\r\n$5\r\nab'))).toEqual({
      replies: [{ error: false, text: 'OK' }],
      used: 5,
    });
    // Multi-byte text: the length counts bytes.
    expect(parseReplies(Buffer.from('$2\r\n\u00e9\r\n')).replies).toEqual([{ error: false, text: '\u00e9' }]);
  });
});
