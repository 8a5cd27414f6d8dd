// A runtime that does not report within the call's deadline (runc stuck, a loaded node). An exec's
// start answers DEADLINE_EXCEEDED and the exec ends StartFailed with 126; a task's create answers
// DEADLINE_EXCEEDED with nothing made. Neither conmon nor the runtime it ran is left to start the
// process (or create the container) later with nobody waiting for it.
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTask, type ShimWorld, startWorld } from './testing/fixture.js';

const ns = 'slowexec';
let w: ShimWorld;
let base: string;

/** Command lines of the host's processes that contain `text`. */
function processesWith(text: string): string[] {
  const found: string[] = [];
  for (const pid of readdirSync('/proc').filter((n) => /^\d+$/.test(n))) {
    try {
      const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
      if (cmd.includes(text)) found.push(`${pid}: ${cmd}`);
    } catch {
      // gone meanwhile
    }
  }
  return found;
}

beforeAll(async () => {
  base = join('/tmp', `berth-slowexec-${randomBytes(4).toString('hex')}`);
  await mkdir(base, { recursive: true });
  // `runc exec`, and `runc create` of a task whose id starts with "hang-", hang for a minute
  // before they run; everything else is the real runc.
  await writeFile(
    join(base, 'runc'),
    '#!/bin/sh\ncase " $* " in *" exec "*|*" create "*" hang-"*) sleep 60;; esac\nexec /usr/sbin/runc "$@"\n',
    { mode: 0o755 },
  );
  w = await startWorld({ shim: { runc: join(base, 'runc'), runtimeTimeoutMs: 4000 } });
});
afterAll(async () => {
  await w?.close();
  await rm(base, { recursive: true, force: true });
});

describe('exec start', () => {
  it('past its deadline: DEADLINE_EXCEEDED, StartFailed 126, the monitor and runtime ended', async () => {
    const { id } = await createTask(w, ns, ['sleep', '1000']);
    const execId = 'slow';
    await w.client.exec({
      namespace: ns,
      id,
      execId,
      process: { args: ['sleep', '987'], cwd: '/', env: ['PATH=/bin'] },
      terminal: false,
      stdin: false,
    });
    await expect(w.client.start({ namespace: ns, id, execId })).rejects.toMatchObject({
      code: 'DEADLINE_EXCEEDED',
      message: expect.stringContaining(`exec "${execId}" in task "${id}": the runtime did not start it`),
    });
    expect(await w.client.state({ namespace: ns, id, execId })).toMatchObject({
      status: 'stopped',
      exitCode: 126,
    });
    expect(await w.client.wait({ namespace: ns, id, execId }, { timeoutMs: 10_000 })).toMatchObject({
      exitCode: 126,
      reason: 'StartFailed',
    });
    // The hanging `runc exec` (under conmon) is gone with its monitor: it can never run the process.
    expect(processesWith(`${base}/runc`).filter((p) => p.includes(' exec '))).toEqual([]);
    expect(processesWith('sleep 987')).toEqual([]);
    await w.client.delete({ namespace: ns, id, execId });
    await w.client.kill({ namespace: ns, id, signal: 'SIGKILL', all: true });
    await w.client.wait({ namespace: ns, id });
    await w.client.delete({ namespace: ns, id });
  });

  it('a task create past its deadline: DEADLINE_EXCEEDED, nothing left, runc create ended', async () => {
    const id = `hang-${randomBytes(4).toString('hex')}`;
    await expect(createTask(w, ns, ['sleep', '1000'], { id })).rejects.toMatchObject({
      code: 'DEADLINE_EXCEEDED',
      message: expect.stringContaining(`task "${id}": runc create did not report`),
    });
    expect(processesWith(id)).toEqual([]);
    expect((await w.client.list({})).tasks.filter((t) => t.id === id)).toEqual([]);
  });
});
