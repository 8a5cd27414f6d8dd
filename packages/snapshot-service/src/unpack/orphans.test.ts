import { existsSync } from 'node:fs';
import { SnapshotKind, UNPACK_LABEL } from '@berth/api';
import { createLogger, keys, tryLock } from '@berth/kit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Snapshotter } from '../snapshots/snapshotter.js';
import { type SnapshotEnv, startSnapshotEnv } from '../testing/env.js';
import { removeOrphanExtracts } from './orphans.js';
import { UNPACK_OWNER_LABEL } from './unpacker.js';

// Which extract snapshots count as orphans, on real Redis and a real state root: those whose
// unpack lock no longer holds their writer's token.
let env: SnapshotEnv;
let sn: Snapshotter;
const log = createLogger({ service: 'snapshot-service', node: 'test', level: 'silent' });

beforeAll(async () => {
  env = await startSnapshotEnv();
  sn = new Snapshotter(env.redis, env.node, env.layout.snapshots);
});
afterAll(async () => env?.stop());

/** An extract snapshot for `chainId`, labelled with `owner` (none: as written before the label). */
async function extract(name: string, chainId: string, owner?: string) {
  const labels: Record<string, string> = { [UNPACK_LABEL]: chainId };
  if (owner) labels[UNPACK_OWNER_LABEL] = owner;
  return sn.create(SnapshotKind.active, { key: name, labels });
}

describe('orphan extract snapshots', () => {
  it('removes those whose writer no longer holds the lock, and keeps the one still held', async () => {
    const held = await tryLock(env.redis, keys.unpackLock(env.node, 'sha256:held'), 60_000);
    const taken = await tryLock(env.redis, keys.unpackLock(env.node, 'sha256:taken'), 60_000);
    if (!held || !taken) throw new Error('locks not taken');
    const alive = await extract('extract-a sha256:held', 'sha256:held', held.token);
    // Its writer died; a retry took the lock since, with a new token.
    const dead = await extract('extract-b sha256:taken', 'sha256:taken', '1:dead-writer');
    // Its writer died and the lock expired.
    const expired = await extract('extract-c sha256:free', 'sha256:free', '2:dead-writer');
    // Written before the owner label existed: an orphan only once nobody holds the lock.
    const legacyHeld = await extract('extract-d sha256:taken', 'sha256:taken');
    const legacyFree = await extract('extract-e sha256:free', 'sha256:free');
    // A container's rootfs: active, not an unpack.
    await sn.create(SnapshotKind.active, { key: 'containers/x' });

    const r = await removeOrphanExtracts(sn, log);
    expect(r.removed.sort()).toEqual([
      'extract-b sha256:taken',
      'extract-c sha256:free',
      'extract-e sha256:free',
    ]);
    expect(r.held).toBe(2);
    const left = (await sn.list()).items.map((s) => s.name).sort();
    expect(left).toEqual(['containers/x', 'extract-a sha256:held', 'extract-d sha256:taken']);
    for (const gone of [dead, expired, legacyFree]) expect(existsSync(gone.fs)).toBe(false);
    for (const kept of [alive, legacyHeld]) expect(existsSync(kept.fs)).toBe(true);
    await held.release();
    await taken.release();
  });
});
