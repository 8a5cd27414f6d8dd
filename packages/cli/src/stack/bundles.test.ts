import { mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Code } from '@berth/api';
import { afterEach, describe, expect, it } from 'vitest';
import { bundleIsFresh, bundlesEnabled, entryPoint } from './bundles.js';
import { repoRoot } from './plan.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** A bundle dir/services/x.mjs made at `builtS` from dir/src/a.js and dir/src/b.js (mtimes in s). */
function makeBundle(builtS: number, inputsS: [number, number]): { dir: string; services: string } {
  const dir = mkdtempSync(join(tmpdir(), 'berth-bundles-'));
  dirs.push(dir);
  const services = join(dir, 'services');
  const src = join(dir, 'src');
  for (const d of [services, src]) mkdirSync(d);
  const files = [join(src, 'a.js'), join(src, 'b.js')];
  files.forEach((f, i) => {
    writeFileSync(f, 'export {};\n');
    utimesSync(f, inputsS[i] as number, inputsS[i] as number);
  });
  writeFileSync(join(services, 'x.inputs.json'), JSON.stringify(['../src/a.js', '../src/b.js']));
  writeFileSync(join(services, 'x.mjs'), '');
  utimesSync(join(services, 'x.mjs'), builtS, builtS);
  return { dir, services };
}

describe('service bundles', () => {
  it('runs a bundle no input of which is newer (a cache restore writes all within a second)', () => {
    const { services } = makeBundle(1_000_000, [999_000, 1_000_000.5]);
    expect(bundleIsFresh(services, 'x')).toBe(true);
    expect(entryPoint(services, 'x', '/dist/main.js', {})).toBe(join(services, 'x.mjs'));
  });

  it('runs the module instead of a bundle one of whose inputs was rebuilt since', () => {
    const { services } = makeBundle(1_000_000, [999_000, 1_000_005]);
    expect(bundleIsFresh(services, 'x')).toBe(false);
    expect(entryPoint(services, 'x', '/dist/main.js', {})).toBe('/dist/main.js');
  });

  it('runs the module when the bundle, its list of inputs or an input is missing', () => {
    const a = makeBundle(1_000_000, [999_000, 999_000]);
    rmSync(join(a.services, 'x.mjs'));
    expect(bundleIsFresh(a.services, 'x')).toBe(false);
    const b = makeBundle(1_000_000, [999_000, 999_000]);
    rmSync(join(b.services, 'x.inputs.json'));
    expect(bundleIsFresh(b.services, 'x')).toBe(false);
    const c = makeBundle(1_000_000, [999_000, 999_000]);
    rmSync(join(c.dir, 'src', 'b.js'));
    expect(bundleIsFresh(c.services, 'x')).toBe(false);
    const d = makeBundle(1_000_000, [999_000, 999_000]);
    writeFileSync(join(d.services, 'x.inputs.json'), '[]');
    expect(bundleIsFresh(d.services, 'x')).toBe(false);
  });

  it('turns bundles off with BERTH_SERVICE_BUNDLES=0 and refuses another value', () => {
    const { services } = makeBundle(1_000_000, [999_000, 999_000]);
    expect(entryPoint(services, 'x', '/dist/main.js', { BERTH_SERVICE_BUNDLES: '0' })).toBe('/dist/main.js');
    expect(bundlesEnabled({ BERTH_SERVICE_BUNDLES: '1' })).toBe(true);
    expect(() => bundlesEnabled({ BERTH_SERVICE_BUNDLES: 'no' })).toThrow(
      'invalid BERTH_SERVICE_BUNDLES "no"',
    );
    try {
      bundlesEnabled({ BERTH_SERVICE_BUNDLES: 'no' });
    } catch (err) {
      expect((err as { code: string }).code).toBe(Code.INVALID_ARGUMENT);
    }
  });

  it('has a fresh bundle of every process of the stack after the build', () => {
    const services = join(repoRoot(), 'packages', 'cli', 'dist', 'services');
    for (const name of [
      'shim',
      'snapshot-service',
      'image-service',
      'task-service',
      'cri-gateway',
      'cohosted',
    ]) {
      expect(bundleIsFresh(services, name), name).toBe(true);
    }
  });
});
