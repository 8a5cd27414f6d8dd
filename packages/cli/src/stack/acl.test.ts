import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ImageApi, ShimApi, subjectOf } from '@berth/api';
import { connectNats } from '@berth/kit/nats';
import { startNats, startRedis } from '@berth/testing';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { aclConfigText, aclSecrets } from './acl.js';

// `berth config acl` prints what an operator pastes into external servers and berth's config:
// the servers started from exactly that text let each service in as itself, with its limits.

const dir = mkdtempSync(join(tmpdir(), 'berth-acl-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Splits the printed text into the nats-server block, the redis lines and berth's settings. */
function sections(text: string) {
  const nats = text.slice(text.indexOf('authorization {'), text.indexOf('\n}\n') + 3);
  const redis = text
    .split('\n')
    .filter((l) => l.startsWith('user '))
    .join('\n');
  const json = JSON.parse(text.slice(text.lastIndexOf('\n{\n') + 1)) as {
    services: Record<string, { natsUrl: string; redisUrl?: string }>;
  };
  return { nats, redis, services: json.services };
}

describe('berth config acl', () => {
  it('keeps its secrets in a 0600 file it creates once, so printing again gives the same users', () => {
    const file = join(dir, 'acl-secrets.json');
    const a = aclSecrets(file);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(aclSecrets(file)).toEqual(a);
    const opts = { node: 'n1', natsUrl: 'nats://x:1', redisUrl: 'redis://y:2', secrets: a };
    expect(aclConfigText(opts)).toBe(aclConfigText(opts));
  });

  it('refuses a bad node id and a Redis socket path, naming the option', () => {
    const secrets = aclSecrets(undefined);
    const base = { node: 'n1', natsUrl: 'nats://x:1', redisUrl: 'redis://y:2', secrets };
    expect(() => aclConfigText({ ...base, node: 'a.b' })).toThrow(/--node "a.b"/);
    expect(() => aclConfigText({ ...base, redisUrl: '/run/redis.sock' })).toThrow(/--redis-url/);
  });

  it('prints a configuration that real servers take, and each login gets only its role', async () => {
    const text = aclConfigText({
      node: 'n1',
      natsUrl: 'nats://old:secret@127.0.0.1:4222',
      redisUrl: 'redis://127.0.0.1:6379',
      secrets: aclSecrets(undefined),
      admin: 'ops',
    });
    expect(text).not.toContain('old:secret');
    const { nats: natsConf, redis: redisConf, services } = sections(text);
    expect(Object.keys(services).sort()).toEqual(
      ['cli', 'cri-gateway', 'image-service', 'shim', 'snapshot-service', 'task-service'].sort(),
    );
    expect(services.cli?.redisUrl).toBeUndefined();
    const [nats, redis] = await Promise.all([
      startNats({ jetstream: false, config: natsConf }),
      startRedis({ appendonly: false, config: redisConf }),
    ]);
    const nc = await connectNats({
      url: (services['cri-gateway']?.natsUrl ?? '').replace(':4222', `:${nats.port}`),
      name: 'acl-test',
      extra: { maxReconnectAttempts: 0 },
    });
    const r = new Redis((services['image-service']?.redisUrl ?? '').replace(':6379', `:${redis.port}`), {
      lazyConnect: true,
    });
    try {
      await expect(
        nc.request(subjectOf(ShimApi, 'start', 'n1'), new Uint8Array(), { timeout: 2000 }),
      ).rejects.toMatchObject({ code: 'PERMISSIONS_VIOLATION' });
      // An allowed subject with nobody serving it: no responders, not a refusal.
      await expect(
        nc.request(subjectOf(ImageApi, 'list', 'n1'), new Uint8Array(), { timeout: 2000 }),
      ).rejects.toMatchObject({ code: '503' });
      await r.connect();
      await expect(r.set('berth:v1:ns:default:task:x', '1')).rejects.toThrow(/NOPERM/);
      expect(await r.sadd('berth:v1:node:n1:contents', 'sha256:1')).toBe(1);
    } finally {
      r.disconnect();
      await nc.close();
      await Promise.all([nats.stop(), redis.stop()]);
    }
  });
});
