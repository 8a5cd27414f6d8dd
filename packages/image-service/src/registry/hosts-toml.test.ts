import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BerthError, Code } from '@berth/api';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { baseUrlOf, hostsFromDirs, parseHostsToml } from './hosts-toml.js';

const F = '/etc/containerd/certs.d/docker.io/hosts.toml';

function refusal(fn: () => unknown): BerthError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(BerthError);
    expect((err as BerthError).code).toBe(Code.INVALID_ARGUMENT);
    return err as BerthError;
  }
  throw new Error('accepted');
}

describe('parseHostsToml', () => {
  it("reads containerd's layout: server, hosts in order by capability, headers", () => {
    const h = parseHostsToml(
      `# mirrors first, then Docker Hub
server = "https://registry-1.docker.io"

[host."https://mirror.example/v2"]
  capabilities = ["pull", "resolve"]
  [host."https://mirror.example/v2".header]
    x-team = "infra"
    accept-language = ["en", "fr"]

[host."push-only.example"]
  capabilities = ["push"]

[host."127.0.0.1:5000"]
`,
      F,
      'docker.io',
    );
    expect(h).toEqual({
      file: F,
      server: 'https://registry-1.docker.io',
      mirrors: ['https://mirror.example', 'http://127.0.0.1:5000'],
      headers: { 'https://mirror.example': { 'x-team': 'infra', 'accept-language': 'en, fr' } },
    });
  });

  it('keeps TLS settings per endpoint, and marks what berth cannot do yet (UNIMPLEMENTED when used)', () => {
    const h = parseHostsToml(
      `server = "https://r.example"
skip_verify = true
[host."https://m.example"]
  ca = "/etc/certs/m.pem"
  override_path = true
[host."https://rel.example"]
  ca = ["rel.pem"]
  capabilities = ["push"]
[host."https://ok.example"]
  skip_verify = false
`,
      F,
      'r.example',
    );
    expect(h.unsupported).toEqual({ 'https://m.example': 'override_path' });
    // skip_verify and ca are honoured (ca files beside the hosts.toml when relative).
    expect(h.tls).toEqual({
      'https://r.example': { skipVerify: true },
      'https://m.example': { caFiles: ['/etc/certs/m.pem'] },
      'https://rel.example': { caFiles: ['/etc/containerd/certs.d/docker.io/rel.pem'] },
    });
    expect(h.mirrors).toEqual(['https://m.example', 'https://ok.example']);
  });

  it('refuses bad TOML, unknown keys and wrong types naming the file', () => {
    expect(refusal(() => parseHostsToml('server = ', F, 'docker.io')).message).toMatch(
      new RegExp(`^${F}: not valid TOML`),
    );
    expect(refusal(() => parseHostsToml('mirrors = ["x"]', F, 'docker.io')).message).toBe(
      `${F}: unknown key mirrors`,
    );
    expect(
      refusal(() => parseHostsToml('[host."https://m"]\ncapabilities = ["fetch"]', F, 'docker.io')).message,
    ).toContain('capabilities must be an array of "pull", "resolve", "push"');
    expect(refusal(() => parseHostsToml('[host."ftp://m"]', F, 'docker.io')).message).toContain(
      'only http and https are supported',
    );
    expect(refusal(() => parseHostsToml('[header]\nx = "1"', F, 'docker.io')).message).toContain('server');
  });

  it('normalizes base URLs as containerd reads them', () => {
    expect(baseUrlOf('https://m.example/', F)).toBe('https://m.example');
    expect(baseUrlOf('m.example:5000', F)).toBe('https://m.example:5000');
    expect(baseUrlOf('localhost:5000/v2/', F)).toBe('http://localhost:5000');
    expect(baseUrlOf('https://m.example/prefix', F)).toBe('https://m.example/prefix');
  });
});

describe('hostsFromDirs', () => {
  let a: string;
  let b: string;
  beforeAll(async () => {
    a = await mkdtemp(join(tmpdir(), 'berth-hosts-'));
    b = await mkdtemp(join(tmpdir(), 'berth-hosts-'));
    await mkdir(join(a, 'r.example:5000'), { recursive: true });
    await writeFile(join(a, 'r.example:5000', 'hosts.toml'), 'server = "http://r.example:5000"\n');
    await mkdir(join(b, 'r.example:5000'), { recursive: true });
    await writeFile(join(b, 'r.example:5000', 'hosts.toml'), 'server = "https://other.example"\n');
    await mkdir(join(b, '_default'), { recursive: true });
    await writeFile(join(b, '_default', 'hosts.toml'), '[host."https://everything.example"]\n');
  });
  afterAll(async () => {
    await rm(a, { recursive: true, force: true });
    await rm(b, { recursive: true, force: true });
  });

  it('takes the host with its port from the first dir having it, else _default, else nothing', async () => {
    expect((await hostsFromDirs([a, b], 'r.example:5000'))?.server).toBe('http://r.example:5000');
    expect((await hostsFromDirs([b, a], 'r.example:5000'))?.server).toBe('https://other.example');
    expect((await hostsFromDirs([a, b], 'q.example'))?.mirrors).toEqual(['https://everything.example']);
    expect(await hostsFromDirs([a], 'q.example')).toBeUndefined();
    expect(await hostsFromDirs([join(a, 'missing')], 'q.example')).toBeUndefined();
  });

  it('refuses a host that would leave the directory', async () => {
    await expect(hostsFromDirs([a], '../etc')).rejects.toThrow(/is not a host name/);
  });
});
