import { startRedis } from '@berth/testing';
import { Command } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openRedis, type Redis } from './redis.js';
import { onSendCommand, type SendBelow, type SentCommand } from './redis-send-hook.js';

// The one wrapper of a real client's sendCommand: its stages' order, what they are told of each
// command, and the way a stage sends a command of its own past the stages above it.

let server: Awaited<ReturnType<typeof startRedis>>;
let redis: Redis;
const seen: string[] = [];
let ownSend: SendBelow;

beforeAll(async () => {
  server = await startRedis({ appendonly: false });
  redis = await openRedis(server.url);
  const original = redis.sendCommand;
  ownSend = onSendCommand(redis, ({ command, pipelined, resent }, next) => {
    seen.push(`inner ${command.name}${pipelined ? ' pipelined' : ''}${resent ? ' resent' : ''}`);
    return next();
  });
  const wrapped = redis.sendCommand;
  onSendCommand(redis, ({ command }, next) => {
    seen.push(`outer ${command.name}`);
    return next();
  });
  // A second stage adds no second wrapper.
  expect(redis.sendCommand).toBe(wrapped);
  expect(wrapped).not.toBe(original);
});

afterAll(async () => {
  await redis?.quit();
  await server?.stop();
});

describe('onSendCommand', () => {
  it('runs the stage added last first, and passes the reply on', async () => {
    seen.length = 0;
    expect(await redis.set('hook:k', 'v')).toBe('OK');
    expect(await redis.get('hook:k')).toBe('v');
    expect(seen).toEqual(['outer set', 'inner set', 'outer get', 'inner get']);
  });

  it("marks a pipeline's commands pipelined", async () => {
    seen.length = 0;
    const replies = await redis.pipeline().set('hook:p', '1').get('hook:p').exec();
    expect(replies?.map(([err, v]) => [err, v])).toEqual([
      [null, 'OK'],
      [null, '1'],
    ]);
    expect(seen.filter((s) => s.startsWith('inner'))).toEqual(['inner set pipelined', 'inner get pipelined']);
  });

  it('marks a command sent a second time resent', async () => {
    seen.length = 0;
    const cmd = new Command('get', ['hook:k'], { replyEncoding: 'utf8' });
    redis.sendCommand(cmd);
    expect(await cmd.promise).toBe('v');
    // ioredis resends what waited in its queues this way after a reconnect.
    redis.sendCommand(cmd);
    expect(seen).toEqual(['outer get', 'inner get', 'outer get', 'inner get resent']);
  });

  it("sends a stage's own command past the stages above it, and knows it when resent", async () => {
    seen.length = 0;
    const cmd = new Command('incr', ['hook:n']);
    expect(await ownSend(cmd as unknown as SentCommand)).toBe(1);
    expect(seen).toEqual([]);
    redis.sendCommand(cmd);
    expect(seen).toEqual(['outer incr', 'inner incr resent']);
  });
});
