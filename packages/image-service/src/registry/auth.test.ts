import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { credentialsFromDockerConfig, parseChallenges, TokenCache } from './auth.js';

describe('parseChallenges', () => {
  it('reads bearer parameters with quoted commas', () => {
    const [c] = parseChallenges(
      'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/a:pull,push"',
    );
    expect(c).toEqual({
      scheme: 'bearer',
      params: {
        realm: 'https://auth.docker.io/token',
        service: 'registry.docker.io',
        scope: 'repository:library/a:pull,push',
      },
    });
  });
  it('reads several challenges and escapes', () => {
    const cs = parseChallenges('Basic realm="a \\"b\\"", Bearer realm="r",service=s');
    expect(cs.map((c) => c.scheme)).toEqual(['basic', 'bearer']);
    expect(cs[0]?.params.realm).toBe('a "b"');
    expect(cs[1]?.params.service).toBe('s');
  });
});

describe('TokenCache', () => {
  afterEach(() => vi.useRealTimers());
  it('keeps a token until shortly before it expires', () => {
    vi.useFakeTimers();
    const c = new TokenCache();
    c.set('k', 't', 60);
    vi.advanceTimersByTime(50_000);
    expect(c.get('k')).toBe('t');
    vi.advanceTimersByTime(5_000);
    expect(c.get('k')).toBeUndefined();
  });
});

describe('credentialsFromDockerConfig', () => {
  it('reads auth, identity tokens and Docker Hub under its legacy key', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'berth-dcfg-'));
    try {
      const file = join(dir, 'config.json');
      await writeFile(
        file,
        JSON.stringify({
          auths: {
            'https://index.docker.io/v1/': { auth: Buffer.from('hub:pw:x').toString('base64') },
            'r.example:5000': { identitytoken: 'tok' },
            'https://other.example/v1/': { auth: Buffer.from('o:p').toString('base64') },
          },
        }),
      );
      expect(await credentialsFromDockerConfig('docker.io', file)).toEqual({
        username: 'hub',
        password: 'pw:x',
      });
      expect(await credentialsFromDockerConfig('r.example:5000', file)).toEqual({
        identityToken: 'tok',
        username: undefined,
      });
      expect(await credentialsFromDockerConfig('other.example', file)).toEqual({
        username: 'o',
        password: 'p',
      });
      expect(await credentialsFromDockerConfig('none.example', file)).toBeUndefined();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
