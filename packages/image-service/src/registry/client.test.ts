import { describe, expect, it } from 'vitest';
import { TokenCache } from './auth.js';
import { RegistryClient } from './client.js';

const client = (
  o: { insecure?: string[]; hosts?: ConstructorParameters<typeof RegistryClient>[0]['hosts'] } = {},
) =>
  new RegistryClient({
    hosts: o.hosts ?? {},
    insecureRegistries: o.insecure ?? [],
    tokens: new TokenCache(),
    credentials: async () => undefined,
  });

describe('RegistryClient.endpoints', () => {
  it('uses HTTPS unless the host is loopback or configured insecure', () => {
    expect(client().endpoints('registry.example:5000', true)).toEqual(['https://registry.example:5000']);
    expect(client().endpoints('localhost:5000', true)).toEqual(['http://localhost:5000']);
    expect(client().endpoints('127.0.0.1:5000', true)).toEqual(['http://127.0.0.1:5000']);
    expect(client({ insecure: ['lan:5000'] }).endpoints('lan:5000', true)).toEqual(['http://lan:5000']);
    expect(client({ hosts: { lan: { insecure: true } } }).endpoints('lan', true)).toEqual(['http://lan']);
  });

  it('serves docker.io from registry-1.docker.io, mirrors first for pulls only', () => {
    const c = client({ hosts: { 'docker.io': { mirrors: ['https://mirror.example/'] } } });
    expect(c.endpoints('docker.io', true)).toEqual([
      'https://mirror.example',
      'https://registry-1.docker.io',
    ]);
    expect(c.endpoints('docker.io', false)).toEqual(['https://registry-1.docker.io']);
  });
});
