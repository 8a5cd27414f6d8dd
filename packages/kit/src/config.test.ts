import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BerthError, Code } from '@berth/api';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { loadConfig, serviceSetting } from './config.js';
import { startTestService } from './testdata/child.js';

let dir: string;
let n = 0;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'berth-kit-config-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Writes a config file and returns an environment pointing at it. */
async function withFile(content: unknown, env: Record<string, string> = {}): Promise<NodeJS.ProcessEnv> {
  const file = join(dir, `config-${n++}.json`);
  await writeFile(file, typeof content === 'string' ? content : JSON.stringify(content));
  return { BERTH_CONFIG: file, ...env };
}

function refusal(env: NodeJS.ProcessEnv): BerthError {
  try {
    loadConfig(env);
  } catch (err) {
    expect(err).toBeInstanceOf(BerthError);
    expect((err as BerthError).code).toBe(Code.INVALID_ARGUMENT);
    return err as BerthError;
  }
  throw new Error('loadConfig accepted an invalid config');
}

describe('loadConfig', () => {
  it('fills defaults, reads the file, and lets the environment win', async () => {
    const env = await withFile(
      { natsUrl: 'nats://10.0.0.1:4222', nodeId: 'from-file', logLevel: 'debug', services: { x: { a: 1 } } },
      { BERTH_NODE_ID: 'from-env', BERTH_SHUTDOWN_GRACE_MS: '2500', BERTH_STATE_ROOT: '/srv/berth' },
    );
    expect(loadConfig(env)).toEqual({
      natsUrl: 'nats://10.0.0.1:4222',
      nodeId: 'from-env',
      stateRoot: '/srv/berth',
      runRoot: '/run/berth',
      logLevel: 'debug',
      shutdownGraceMs: 2500,
      services: { x: { a: 1 } },
    });
  });

  it('names the field and the environment variable it came from', async () => {
    const env = await withFile({}, { BERTH_NODE_ID: 'bad.node' });
    expect(refusal(env).message).toBe(
      'invalid config "nodeId" (from environment BERTH_NODE_ID): node id must be 1-64 of [a-zA-Z0-9_-]',
    );
    const grace = refusal(await withFile({}, { BERTH_SHUTDOWN_GRACE_MS: 'soon' }));
    expect(grace.message).toMatch(
      /^invalid config "shutdownGraceMs" \(from environment BERTH_SHUTDOWN_GRACE_MS\): /,
    );
  });

  it('names the field and the file it came from', async () => {
    const env = await withFile({ stateRoot: 'var/lib/berth' });
    expect(refusal(env).message).toBe(
      `invalid config "stateRoot" (from config file ${env.BERTH_CONFIG}): state root must be an absolute path`,
    );
    const level = await withFile({ logLevel: 'loud' });
    expect(refusal(level).message).toMatch(
      /^invalid config "logLevel" \(from config file .*config-\d+\.json\): /,
    );
  });

  it('refuses a file that is not a JSON object, or is missing when named', async () => {
    const broken = await withFile('{"natsUrl": ');
    expect(refusal(broken).message).toMatch(
      new RegExp(`^config file ${broken.BERTH_CONFIG} is not valid JSON: `),
    );
    const list = await withFile([1, 2]);
    expect(refusal(list).message).toBe(`config file ${list.BERTH_CONFIG} must hold a JSON object`);
    const missing = join(dir, 'nope.json');
    expect(refusal({ BERTH_CONFIG: missing }).message).toBe(
      `config file ${missing} (BERTH_CONFIG) does not exist`,
    );
  });
});

describe('serviceSetting', () => {
  it('returns the default, the value, or a clear error naming services.<svc>.<key>', async () => {
    const config = loadConfig(
      await withFile({ services: { 'image-service': { maxConcurrentDownloads: 'many' } } }),
    );
    expect(serviceSetting(config, 'image-service', 'other', z.number(), 7)).toBe(7);
    const cfg2 = loadConfig(await withFile({ services: { 'image-service': { maxConcurrentDownloads: 4 } } }));
    expect(serviceSetting(cfg2, 'image-service', 'maxConcurrentDownloads', z.number().int(), 3)).toBe(4);
    expect(() => serviceSetting(config, 'image-service', 'maxConcurrentDownloads', z.number(), 3)).toThrow(
      /^invalid config "services\.image-service\.maxConcurrentDownloads": /,
    );
  });
});

describe('a service started with a bad config', () => {
  it('exits 2 with one line naming the field and its source', async () => {
    const child = await startTestService({
      natsUrl: 'nats://127.0.0.1:1',
      redisUrl: 'redis://127.0.0.1:1',
      nodeId: 'no/slashes',
      waitReady: false,
    });
    expect(await child.exited).toBe(2);
    expect(child.output()).toBe(
      'task-service: invalid config "nodeId" (from environment BERTH_NODE_ID): node id must be 1-64 of [a-zA-Z0-9_-]\n',
    );
    await child.stop();
  });
});
