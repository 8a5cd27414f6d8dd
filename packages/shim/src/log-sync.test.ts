// services.shim.logSync: conmon is given --no-sync-log (when it has the flag) unless the setting
// asks for the log's fsync at exit. What conmon was given is read from its command line.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import type { ShimCreateRequest, ShimState } from '@berth/api';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  bindRootfs,
  type LocalAgent,
  makeSpec,
  newId,
  removeTestCgroups,
  type ShimWorld,
  startLocalAgent,
  startWorld,
} from './testing/fixture.js';

const CONMON = '/usr/bin/conmon';
/** Whether the installed conmon has the flag at all (older ones fsync their logs always). */
const hasFlag = (() => {
  try {
    return execFileSync(CONMON, ['--help'], { encoding: 'utf8' }).includes('--no-sync-log');
  } catch (err) {
    return String((err as { stdout?: unknown }).stdout ?? '').includes('--no-sync-log');
  }
})();
const ns = 'logsync';
let w: ShimWorld;
/** An agent in this process beside the world's, without the setting. */
let la: LocalAgent;
const localNode = `logsync-${Math.random().toString(36).slice(2, 10)}`;

beforeAll(async () => {
  if (!hasFlag) return;
  w = await startWorld({ shim: { logSync: true } });
  la = await startLocalAgent(w, localNode);
});
afterAll(async () => {
  await la?.close();
  await removeTestCgroups(localNode);
  await w?.close();
});

/** A started task's request: sleep, in a cgroup of the node's test tree. */
async function request(node: string, rootfs: string): Promise<ShimCreateRequest> {
  const id = newId();
  const spec = await makeSpec(['sleep', '300'], { cgroupsPath: `/berth-test/${node}/${id}` });
  return { namespace: ns, id, spec, rootfs: bindRootfs(rootfs), terminal: false, stdin: false, start: true };
}

/** The arguments the task's conmon runs with. */
function conmonArgs(st: ShimState): string[] {
  expect(st.monitorPid).toBeGreaterThan(0);
  return readFileSync(`/proc/${st.monitorPid}/cmdline`, 'utf8').split('\0');
}

describe.runIf(hasFlag && existsSync(CONMON))('services.shim.logSync', () => {
  it('unset: conmon skips the fsync of the log (--no-sync-log)', async () => {
    const req = await request(localNode, la.rootfs);
    const st = await la.agent.create(req);
    try {
      expect(conmonArgs(st)).toContain('--no-sync-log');
    } finally {
      await la.agent.kill({ namespace: ns, id: req.id, signal: 'SIGKILL', all: true });
      await la.agent.wait({ namespace: ns, id: req.id });
      await la.agent.delete({ namespace: ns, id: req.id });
    }
  });

  it('true: conmon fsyncs the log at exit (no --no-sync-log)', async () => {
    const req = await request(w.node, w.rootfs);
    const st = await w.client.create(req);
    try {
      expect(conmonArgs(st)).not.toContain('--no-sync-log');
    } finally {
      await w.client.kill({ namespace: ns, id: req.id, signal: 'SIGKILL', all: true });
      await w.client.wait({ namespace: ns, id: req.id });
      await w.client.delete({ namespace: ns, id: req.id });
    }
  });
});
