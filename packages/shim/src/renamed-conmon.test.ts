import { copyFile, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { tempDir } from '@berth/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTask, type ShimWorld, startWorld, waitForLog } from './testing/fixture.js';

// conmon installed under another name (services.shim.conmon takes any path): the real binary,
// copied, so the monitors run as `berth-monitor`.
const ns = 'renamed';
let w: ShimWorld;
let bin: string;

beforeAll(async () => {
  bin = await tempDir('renamed-conmon');
  await copyFile('/usr/bin/conmon', join(bin, 'berth-monitor'));
  w = await startWorld({ shim: { conmon: join(bin, 'berth-monitor') } });
});
afterAll(async () => {
  await w?.close();
  if (bin) await rm(bin, { recursive: true, force: true });
});

describe('a conmon installed under another name', () => {
  it('is its task’s monitor after an agent restart: the task stays running and its exit is seen with its code', async () => {
    const script = 'echo ready; while [ ! -f /tmp/go-renamed ]; do sleep 0.05; done; exit 7';
    const { id, st } = await createTask(w, ns, ['sh', '-c', script]);
    await waitForLog(st.logPath!, 'ready');
    expect((await readFile(`/proc/${st.monitorPid}/comm`, 'utf8')).trim()).toBe('berth-monitor');

    await w.killAgent();
    await w.startAgent();
    expect(await w.client.state({ namespace: ns, id })).toMatchObject({
      status: 'running',
      monitorPid: st.monitorPid,
    });

    await writeFile(join(w.rootfs, 'tmp', 'go-renamed'), '');
    expect(await w.client.wait({ namespace: ns, id })).toMatchObject({ exitCode: 7 });
    expect((await w.nextExit((e) => e.id === id)).reason).toBeUndefined();
    await w.client.delete({ namespace: ns, id });
  });
});
