// A container the OOM killer ends, whose conmon writes no `oom` marker: as conmon up to 2.2.1 on a
// cgroup v2 host that also mounts a v1 hierarchy (it takes the container's cgroup from the first
// line of /proc/<pid>/cgroup, a v1 one there, and watches a file that is not there). Here conmon
// runs in a cgroup namespace rooted at a memory cgroup of its own, so the container's cgroup reads
// "/../<id>" to it: the same loss, on this v1 host. The exit must still say OOMKilled, from the
// cgroup's own count.
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rm, rmdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { hostLayout } from '@berth/kit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { taskPaths } from './domain/paths.js';
import { createTask, removeTestCgroups, type ShimWorld, startWorld } from './testing/fixture.js';

const MEMORY = '/sys/fs/cgroup/memory';
const ns = 'oomunseen';
/** Where each conmon the wrapper starts gets a memory cgroup of its own. */
const wrapRoot = join(MEMORY, `berth-oom-unseen-${process.pid}`);
let w: ShimWorld;
let base: string;

describe.skipIf(!existsSync(join(MEMORY, 'cgroup.procs')))('an OOM kill conmon did not see', () => {
  beforeAll(async () => {
    base = join('/tmp', `berth-oom-unseen-${process.pid}`);
    await mkdir(base, { recursive: true });
    await writeFile(
      join(base, 'conmon'),
      `#!/bin/sh\nd=${wrapRoot}/$$\nmkdir -p "$d" && echo $$ > "$d/cgroup.procs" || exit 1\nexec unshare --cgroup /usr/bin/conmon "$@"\n`,
      { mode: 0o755 },
    );
    w = await startWorld({ shim: { conmon: join(base, 'conmon') } });
  });
  afterAll(async () => {
    await w?.close();
    await removeTestCgroups(w?.node ?? '');
    // Each conmon leaves its cgroup once it exited (they all have: their tasks are deleted).
    for (const d of await readdir(wrapRoot).catch(() => [] as string[])) {
      const dir = join(wrapRoot, d);
      if (!(await readFile(join(dir, 'cgroup.procs'), 'utf8').catch(() => '')).trim())
        await rmdir(dir).catch(() => undefined);
    }
    await rmdir(wrapRoot).catch(() => undefined);
    await rm(base, { recursive: true, force: true });
  });

  it('exits 137 with reason OOMKilled from the cgroup count, with no marker from conmon', async () => {
    // dd allocates its 64 MiB block buffer, well over the 16 MiB limit.
    const { id } = await createTask(w, ns, ['dd', 'if=/dev/zero', 'of=/dev/null', 'bs=64M', 'count=1'], {
      memoryLimit: 16 * 1024 * 1024,
    });
    const exit = await w.client.wait({ namespace: ns, id });
    const p = taskPaths(hostLayout({ stateRoot: w.stateRoot, runRoot: w.runRoot }), ns, id);
    // conmon saw nothing (the case under test), and the exit still says what happened.
    expect(existsSync(p.oomFile) || existsSync(p.legacyOomFile)).toBe(false);
    expect(exit).toMatchObject({ exitCode: 137, reason: 'OOMKilled' });
    expect(await w.nextExit((e) => e.id === id)).toMatchObject({ reason: 'OOMKilled' });
    await w.client.delete({ namespace: ns, id });
  });
});
