import { writeFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { connectRedis, type Redis } from '@berth/kit';
import { startRedis, type TestServer, tempDir } from '@berth/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Snapshotter } from './snapshotter.js';

// Two replicas of the snapshot-service on one node: one prepares on a parent it has not read
// before while the other removes that parent (and maybe makes it again) between the first one's
// read and its directory. The prepare starts over from fresh reads, as it does for a parent read
// from its cache: NOT_FOUND for a parent gone, a snapshot on the parent made again.

let server: TestServer;
let redis: Redis;
let base: string;
let root: string;

beforeAll(async () => {
  server = await startRedis({ appendonly: false });
  redis = await connectRedis(server.url);
  base = await tempDir('stale-parent');
  root = join(base, 'snapshots');
});

afterAll(async () => {
  redis.disconnect();
  await server.stop();
  // Directories only: a prepare here returns its mounts, it mounts nothing.
  await rm(base, { recursive: true, force: true });
});

async function committed(s: Snapshotter, name: string, content: string): Promise<void> {
  const key = `${name}-active-${content}`;
  const mounts = await s.prepare({ key });
  writeFileSync(join(mounts[0]?.source as string, 'f'), content);
  await s.commit({ name, key });
}

describe('a first prepare on a parent another replica changes under it', () => {
  for (const remade of [false, true]) {
    it(remade ? 'is made on the parent made again' : 'is NOT_FOUND when the parent is gone', async () => {
      const node = remade ? 'remade' : 'removed';
      const a = new Snapshotter(redis, node, root);
      const b = new Snapshotter(redis, node, root);
      await committed(b, 'P', 'one');
      const get = a.store.get.bind(a.store);
      let first = true;
      a.store.get = async (name: string) => {
        const record = await get(name);
        if (name === 'P' && first) {
          first = false;
          await b.remove('P');
          if (remade) await committed(b, 'P', 'two');
        }
        return record;
      };
      const prepared = a.prepare({ key: 'child', parent: 'P' });
      if (!remade) {
        await expect(prepared).rejects.toMatchObject({ code: 'NOT_FOUND' });
        return;
      }
      const mounts = await prepared;
      const parent = await b.store.get('P');
      expect(JSON.stringify(mounts)).toContain(join(root, String(parent?.id), 'fs'));
    });
  }
});
