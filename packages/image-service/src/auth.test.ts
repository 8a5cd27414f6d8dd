import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Code } from '@berth/api';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hostPlatform } from './images/platform.js';
import { helperStore } from './registry/credential-helper.js';
import { writeTestHelper } from './testing/credential-helper.js';
import { type FixtureImage, fileTar, makeImage, makeLayer, uploadImage } from './testing/fixtures.js';
import { type ImageEnv, rejection, startImageEnv } from './testing/harness.js';
import { type RegistryProxy, startProxy } from './testing/proxy.js';

/** A bcrypt htpasswd line, made with glibc's crypt (cost 4 keeps the test fast). */
function htpasswdLine(user: string, password: string): string {
  const hash = execFileSync('python3', [
    '-W',
    'ignore',
    '-c',
    'import crypt,sys; print(crypt.crypt(sys.argv[1], crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16)))',
    password,
  ])
    .toString()
    .trim();
  return `${user}:${hash}\n`;
}

const arch = hostPlatform().architecture;
let img: FixtureImage;

describe('basic auth (registry with htpasswd)', () => {
  let env: ImageEnv;
  const auth = `Basic ${Buffer.from('alice:s3cret').toString('base64')}`;
  beforeAll(async () => {
    env = await startImageEnv({ htpasswd: htpasswdLine('alice', 's3cret') });
    img = makeImage([makeLayer(fileTar('etc/auth', 'basic'), 'gzip')], { arch });
    await uploadImage(env.registry.url, 'private/app', 'v1', img, auth);
  });
  afterAll(() => env?.stop());

  it('fails UNAUTHENTICATED naming the reference without credentials', async () => {
    const ref = `${env.registry.host}/private/app:v1`;
    const e = await rejection(env.service().pull({ ref, unpack: false }, 'default'));
    expect(e.code).toBe(Code.UNAUTHENTICATED);
    expect(e.message).toContain(`"${ref}"`);
  });

  it('fails with wrong credentials and pulls with the right ones', async () => {
    const ref = `${env.registry.host}/private/app:v1`;
    const bad = await rejection(
      env.service().pull({ ref, unpack: false, auth: { username: 'alice', password: 'x' } }, 'default'),
    );
    expect(bad.code).toBe(Code.UNAUTHENTICATED);
    const r = await env
      .service()
      .pull({ ref, unpack: false, auth: { username: 'alice', password: 's3cret' } }, 'default');
    expect(r.image.manifest.digest).toBe(img.desc.digest);
  });

  it('uses credentials from a docker config.json', async () => {
    const file = join(env.stateRoot, 'config.json');
    await writeFile(
      file,
      JSON.stringify({
        auths: { [env.registry.host]: { auth: Buffer.from('alice:s3cret').toString('base64') } },
      }),
    );
    const r = await env
      .service({ dockerConfig: file })
      .pull({ ref: `${env.registry.host}/private/app:v1`, unpack: false }, 'cfg');
    expect(r.image.name).toBe(`${env.registry.host}/private/app:v1`);
  });

  it('uses credentials from a docker credential helper named by credsStore or credHelpers', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'berth-cred-'));
    const savedPath = process.env.PATH;
    try {
      await writeTestHelper(dir, 'berthtest');
      process.env.PATH = `${dir}:${savedPath ?? ''}`;
      const file = join(dir, 'config.json');
      const ref = `${env.registry.host}/private/app:v1`;
      await writeFile(file, JSON.stringify({ credHelpers: { [env.registry.host]: 'berthtest' } }));
      // The helper holds nothing yet: an anonymous pull, refused by the registry.
      const anon = await rejection(
        env.service({ dockerConfig: file }).pull({ ref, unpack: false }, 'helper'),
      );
      expect(anon.code).toBe(Code.UNAUTHENTICATED);
      await helperStore('berthtest', env.registry.host, 'alice', 's3cret');
      const r = await env.service({ dockerConfig: file }).pull({ ref, unpack: false }, 'helper');
      expect(r.image.manifest.digest).toBe(img.desc.digest);
      await writeFile(file, JSON.stringify({ credsStore: 'berthtest' }));
      const again = await env.service({ dockerConfig: file }).pull({ ref, unpack: false }, 'store');
      expect(again.image.manifest.digest).toBe(img.desc.digest);
      expect(await readFile(join(dir, 'calls.log'), 'utf8')).toContain(`get ${env.registry.host}\n`);
    } finally {
      process.env.PATH = savedPath;
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('bearer tokens (token server in front of the registry)', () => {
  let env: ImageEnv;
  let proxy: RegistryProxy;
  beforeAll(async () => {
    env = await startImageEnv();
    img = makeImage(
      [makeLayer(fileTar('etc/auth', 'bearer'), 'gzip'), makeLayer(fileTar('etc/b2', 'x'), 'none')],
      { arch },
    );
    await uploadImage(env.registry.url, 'tok/app', 'v1', img);
    proxy = await startProxy({ upstream: env.registry.url, bearer: { users: { bob: 'pw' } } });
  });
  afterAll(async () => {
    await proxy?.stop();
    await env?.stop();
  });

  it('fails UNAUTHENTICATED naming the reference when the token server refuses', async () => {
    const ref = `${proxy.host}/tok/app:v1`;
    const e = await rejection(env.service().pull({ ref, unpack: false }, 'default'));
    expect(e.code).toBe(Code.UNAUTHENTICATED);
    expect(e.message).toContain(`"${ref}"`);
  });

  it('fails DEADLINE_EXCEEDED naming the reference when the token server never answers', async () => {
    const held: ServerResponse[] = [];
    const silent = createServer((req, res) => {
      if (req.url?.startsWith('/token')) {
        held.push(res); // accepted, never answered
        return;
      }
      const { port } = silent.address() as AddressInfo;
      res.writeHead(401, {
        'www-authenticate': `Bearer realm="http://127.0.0.1:${port}/token",service="silent"`,
      });
      res.end();
    });
    silent.listen(0, '127.0.0.1');
    await once(silent, 'listening');
    const ref = `127.0.0.1:${(silent.address() as AddressInfo).port}/tok/app:v1`;
    try {
      const svc = env.service({ settings: { progressTimeoutMs: 500 } });
      const e = await rejection(svc.pull({ ref, unpack: false }, 'silent'));
      expect(e.code).toBe(Code.DEADLINE_EXCEEDED);
      expect(e.message).toMatch(
        /^token server http:\/\/127\.0\.0\.1:\d+\/token did not answer within 500 ms/,
      );
      expect(e.message).toContain(`"${ref}"`);
      expect(held).toHaveLength(1);
    } finally {
      for (const r of held) r.destroy();
      silent.close();
    }
  });

  it('fetches an anonymous token with GET when the token server allows anonymous pulls', async () => {
    const open = await startProxy({ upstream: env.registry.url, bearer: { users: {}, anonymousPull: true } });
    try {
      const r = await env.service().pull({ ref: `${open.host}/tok/app:v1`, unpack: false }, 'anon');
      expect(r.image.manifest.digest).toBe(img.desc.digest);
      expect(open.count('GET', '/token')).toBe(1);
      expect(open.count('POST', '/token')).toBe(0);
    } finally {
      await open.stop();
    }
  });

  it('gets a token through the challenge and reuses it per scope until expiry', async () => {
    const svc = env.service();
    const ref = `${proxy.host}/tok/app:v1`;
    const before = proxy.tokenRequests;
    const r = await svc.pull({ ref, unpack: false, auth: { username: 'bob', password: 'pw' } }, 'a');
    expect(r.image.manifest.digest).toBe(img.desc.digest);
    await svc.pull({ ref, unpack: false, auth: { username: 'bob', password: 'pw' } }, 'b');
    expect(proxy.tokenRequests - before).toBe(1);
  });
});
