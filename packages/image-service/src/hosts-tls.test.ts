import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { copyFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { Code } from '@berth/api';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hostPlatform } from './images/platform.js';
import { type FixtureImage, fileTar, makeImage, makeLayer, uploadImage } from './testing/fixtures.js';
import { type ImageEnv, rejection, startImageEnv } from './testing/harness.js';

// A registry behind HTTPS with a self-signed certificate for 127.0.0.1, reached as "tls.invalid"
// through a hosts.toml naming it as the server: skip_verify and ca as containerd reads them.
let env: ImageEnv;
let img: FixtureImage;
let front: Server;
let server: string;
let certFile: string;
const hostsDir = () => join(env.stateRoot, 'certs.d');
const hostsToml = () => join(hostsDir(), 'tls.invalid', 'hosts.toml');
const ref = 'tls.invalid/tls/app:v1';

beforeAll(async () => {
  env = await startImageEnv();
  img = makeImage([makeLayer(fileTar('etc/tls', 'over https'), 'gzip')], {
    arch: hostPlatform().architecture,
  });
  await uploadImage(env.registry.url, 'tls/app', 'v1', img);
  const dir = join(env.stateRoot, 'tls');
  await mkdir(dir, { recursive: true });
  certFile = join(dir, 'cert.pem');
  const keyFile = join(dir, 'key.pem');
  execFileSync('openssl', [
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-days',
    '1',
    '-subj',
    '/CN=127.0.0.1',
    '-addext',
    'subjectAltName=IP:127.0.0.1',
    '-keyout',
    keyFile,
    '-out',
    certFile,
  ]);
  const upstream = new URL(env.registry.url);
  front = createServer({ key: await readFile(keyFile), cert: await readFile(certFile) }, (req, res) => {
    const out = request(
      {
        host: upstream.hostname,
        port: upstream.port,
        path: req.url,
        method: req.method,
        headers: req.headers,
      },
      (up) => {
        res.writeHead(up.statusCode ?? 502, up.headers);
        up.pipe(res);
      },
    );
    out.on('error', () => res.destroy());
    req.pipe(out);
  });
  front.listen(0, '127.0.0.1');
  await once(front, 'listening');
  server = `https://127.0.0.1:${(front.address() as AddressInfo).port}`;
  await mkdir(join(hostsDir(), 'tls.invalid'), { recursive: true });
});
afterAll(async () => {
  front?.closeAllConnections();
  front?.close();
  await env?.stop();
});

const pull = (ns: string) =>
  env.service({ settings: { hostsDirs: [hostsDir()] } }).pull({ ref, unpack: false }, ns);

describe('hosts.toml TLS settings', () => {
  it('refuses a certificate the system does not trust, without skip_verify or ca', async () => {
    await writeFile(hostsToml(), `server = "${server}"\n`);
    const e = await rejection(pull('tls-none'));
    expect(e.code).toBe(Code.UNAVAILABLE);
    expect(e.message).toMatch(/SELF_SIGNED|self[- ]signed|certificate/i);
  });

  it('pulls with skip_verify = true', async () => {
    await writeFile(hostsToml(), `server = "${server}"\nskip_verify = true\n`);
    expect((await pull('tls-skip')).image.target.digest).toBe(img.desc.digest);
  });

  it('pulls trusting the ca file named beside hosts.toml, and names a ca that cannot be read', async () => {
    await copyFile(certFile, join(hostsDir(), 'tls.invalid', 'registry-ca.pem'));
    await writeFile(hostsToml(), `server = "${server}"\nca = "registry-ca.pem"\n`);
    expect((await pull('tls-ca')).image.target.digest).toBe(img.desc.digest);
    await writeFile(hostsToml(), `server = "${server}"\nca = ["/nonexistent/ca.pem"]\n`);
    const e = await rejection(pull('tls-missing'));
    expect(e.code).toBe(Code.FAILED_PRECONDITION);
    expect(e.message).toBe(`${hostsToml()}: ca /nonexistent/ca.pem for ${server} cannot be read: ENOENT`);
  });
});
