import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const PKG = join(dirname(fileURLToPath(import.meta.url)), '..');
const ROOT = join(PKG, '..', '..');

// What a program embedding the SDK pays for it: its declared dependencies, and the modules that
// loading it pulls in. It must never open (or even load) Redis or the service runtime.
describe('@berth/client as a dependency', () => {
  const pkg = JSON.parse(readFileSync(join(PKG, 'package.json'), 'utf8'));

  it('is publishable and depends only on the contracts, the kit and nats', () => {
    expect(pkg.private).toBeUndefined();
    expect(pkg.files).toContain('dist');
    expect(pkg.exports['.'].types).toBe('./dist/index.d.ts');
    expect(Object.keys(pkg.dependencies).sort()).toEqual(['@berth/api', '@berth/kit', 'nats']);
  });

  it('loads neither ioredis, pino nor the OpenTelemetry SDK when imported', () => {
    // A fresh process imports the built package by its name and lists the CommonJS modules it
    // loaded (ioredis, pino and the OTel SDK are CommonJS, so each would be in the cache).
    const script = `
      import { createRequire } from 'node:module';
      const sdk = await import('@berth/client');
      if (typeof sdk.connect !== 'function') throw new Error('no connect export');
      const cache = Object.keys(createRequire(import.meta.url)('node:module')._cache);
      process.stdout.write(JSON.stringify(cache));
    `;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
      cwd: PKG,
      encoding: 'utf8',
    });
    expect(r.status, r.stderr).toBe(0);
    const loaded = JSON.parse(r.stdout) as string[];
    const has = (name: string) => loaded.some((f) => f.includes(`/node_modules/${name}/`));
    // The check sees CommonJS packages at all: nats is one, and the SDK needs it.
    expect(has('nats')).toBe(true);
    for (const heavy of [
      'ioredis',
      'pino',
      '@opentelemetry/sdk-trace-base',
      '@opentelemetry/sdk-trace-node',
      '@opentelemetry/exporter-trace-otlp-http',
    ]) {
      expect(has(heavy), `${heavy} was loaded`).toBe(false);
    }
  });
});

describe('the API reference', () => {
  it('docs/sdk/README.md is what scripts/sdk-docs.mjs generates from the source', () => {
    const r = spawnSync(process.execPath, [join(ROOT, 'scripts', 'sdk-docs.mjs'), '--check'], {
      encoding: 'utf8',
    });
    expect(r.status, `${r.stdout}${r.stderr}`).toBe(0);
    const doc = readFileSync(join(ROOT, 'docs', 'sdk', 'README.md'), 'utf8');
    // Every class of the SDK is documented with its methods.
    for (const heading of [
      'class Berth',
      'class Images',
      'class Tasks',
      'class Events',
      'function connect',
    ]) {
      expect(doc).toContain(`### ${heading}`);
    }
    expect(doc).toContain('- `pullWithProgress(ref: string, opts: PullOptions = {}): Transfer<PullReply>`');
  });
});
