import { BerthError, Code, type ImageRecord } from '@berth/api';
import { describe, expect, it } from 'vitest';
import { type ImageOpsDeps, removeImage } from './image-ops.js';
import type { ImagePort } from './ports.js';

// RemoveImage against an image-service held in a map: what it asks the image-service to do, with
// and without the gateway's own answer to "does a container use it".

const ID = `sha256:${'a'.repeat(64)}`;
const MANIFEST = `sha256:${'b'.repeat(64)}`;
const rec = (name: string) =>
  ({
    name,
    configDigest: ID,
    target: { digest: MANIFEST },
    manifest: { digest: MANIFEST },
    updatedAt: '2026-12-01T00:00:00Z',
  }) as unknown as ImageRecord;

function deps(containersUsing?: ImageOpsDeps['containersUsing']) {
  const records = new Map(['registry.test/a:1', 'registry.test/a:2'].map((n) => [n, rec(n)]));
  const removes: Record<string, unknown>[] = [];
  const images = {
    get: async (name: string) => {
      const r = records.get(name);
      if (!r) throw new BerthError(Code.NOT_FOUND, `image "${name}" not found`);
      return r;
    },
    list: async () => [...records.values()],
    remove: async (req: { name: string }) => {
      removes.push(req);
      records.delete(req.name);
      return { removed: [req.name] };
    },
  } as unknown as ImagePort;
  const d: ImageOpsDeps = { images, snapshots: {} as never, snapshotsDir: '/x' };
  if (containersUsing) d.containersUsing = containersUsing;
  return { d, removes };
}

describe('removeImage', () => {
  it('spares the image-service its in-use check when the gateway knows no container uses the image', async () => {
    const asked: string[][] = [];
    const t = deps(async (refs) => {
      asked.push(refs);
      return [];
    });
    await removeImage(t.d, 'registry.test/a:1');
    // Every name's name and digests are what a container record may name the image by.
    expect(new Set(asked[0])).toEqual(new Set(['registry.test/a:1', 'registry.test/a:2', ID, MANIFEST]));
    expect(t.removes).toEqual([
      { name: 'registry.test/a:1', gc: false, force: true },
      { name: 'registry.test/a:2', gcLater: true, force: true },
    ]);
  });

  it('leaves the check (and the refusal) to the image-service when a container uses it, or nobody can tell', async () => {
    const used = deps(async () => ['c1']);
    await removeImage(used.d, 'registry.test/a:1');
    expect(used.removes.every((r) => r.force === undefined)).toBe(true);
    const unknown = deps();
    await removeImage(unknown.d, 'registry.test/a:2');
    expect(unknown.removes.every((r) => r.force === undefined)).toBe(true);
    expect(unknown.removes).toHaveLength(2);
  });
});
