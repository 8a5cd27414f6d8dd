import { BerthError, Code, type ImageRecord } from '@berth/api';
import { describe, expect, it } from 'vitest';
import { type ImageOpsDeps, removeImage } from './image-ops.js';
import type { ImagePort } from './ports.js';

// RemoveImage against an image-service held in a map: what it asks the image-service to do.

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

function deps() {
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
  return { d, removes };
}

describe('removeImage', () => {
  it('removes every name of the image, whatever container uses it (forced, as containerd), collecting once', async () => {
    const t = deps();
    await removeImage(t.d, 'registry.test/a:1');
    expect(t.removes).toEqual([
      { name: 'registry.test/a:1', gc: false, force: true },
      { name: 'registry.test/a:2', gcLater: true, force: true },
    ]);
    // Idempotent: gone is success.
    await removeImage(t.d, 'registry.test/a:1');
    expect(t.removes).toHaveLength(2);
  });
});
