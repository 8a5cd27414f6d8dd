// Every Redis key family has one owning service (keyOwners in keys.ts): this checks that no package
// builds a key of a family it does not own, and that docs/layout.md names the same owners.
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { type KeyOwner, keyOwners, keys } from './keys.js';

const PACKAGES = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const LAYOUT_MD = join(PACKAGES, '..', 'docs', 'layout.md');
type Family = keyof typeof keys;
const isFamily = (f: string): f is Family => Object.hasOwn(keyOwners, f);

/** Non-test TypeScript files under a directory, recursively (test helpers in src/testing included). */
function sources(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) {
      if (e.name !== 'node_modules' && e.name !== 'testdata') out.push(...sources(p));
    } else if (e.name.endsWith('.ts') && !e.name.endsWith('.test.ts')) out.push(p);
  }
  return out;
}

/** Each use of a key family (`keys.<family>(`) in `text` that `pkg` does not own, as "pkg: family". */
function foreignUses(pkg: string, text: string): string[] {
  const out: string[] = [];
  for (const m of text.matchAll(/\bkeys\.([A-Za-z]+)\s*\(/g)) {
    const family = m[1] as string;
    if (!isFamily(family)) continue;
    if (!(keyOwners[family] as readonly string[]).includes(pkg)) out.push(`${pkg}: keys.${family}`);
  }
  return out;
}

describe('Redis key owners', () => {
  it('finds a use outside the owner and accepts the owner (the check itself)', () => {
    expect(foreignUses('image-service', 'await r.smembers(keys.containers(ns));')).toEqual([
      'image-service: keys.containers',
    ]);
    expect(foreignUses('snapshot-service', 'r.hget(keys.image (node, ns, n))')).toEqual([
      'snapshot-service: keys.image',
    ]);
    expect(foreignUses('task-service', 'r.hget(keys.container(ns, id)); // keys.ts')).toEqual([]);
    expect(foreignUses('snapshot-service', 'withLock(r, keys.gcLock(node))')).toEqual([]);
  });

  it('no package builds a key of a family another service owns', () => {
    const found: string[] = [];
    let files = 0;
    for (const pkg of readdirSync(PACKAGES, { withFileTypes: true })) {
      if (!pkg.isDirectory()) continue;
      let list: string[];
      try {
        list = sources(join(PACKAGES, pkg.name, 'src'));
      } catch {
        continue; // a package without src/
      }
      for (const f of list) {
        files++;
        found.push(...foreignUses(pkg.name, readFileSync(f, 'utf8')).map((u) => `${u} (${f})`));
      }
    }
    expect(files).toBeGreaterThan(50);
    expect(found).toEqual([]);
  });

  it('every family has an owner and docs/layout.md names the same ones', () => {
    expect(Object.keys(keyOwners).sort()).toEqual(Object.keys(keys).sort());
    const doc = readFileSync(LAYOUT_MD, 'utf8');
    for (const [family, owners] of Object.entries(keyOwners) as [Family, readonly KeyOwner[]][]) {
      const row = doc.split('\n').find((l) => l.startsWith(`| \`keys.${family}\``));
      expect(row, `docs/layout.md has no row for keys.${family}`).toBeDefined();
      const cell = (row as string).split('|')[2]?.trim() ?? '';
      expect(cell.split(/,\s*/).sort(), `owners of keys.${family} in docs/layout.md`).toEqual(
        [...owners].sort(),
      );
    }
  });
});
