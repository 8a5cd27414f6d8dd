// Runtimes that fail an exec's start or a task's create without a proper answer.
// - One that fails without a word on stderr (killed, or failing silently): conmon then closes its
//   sync pipe with no message (2.1.6 here; 2.2.0 and 2.2.1 do so for every failed `runc exec`, a
//   missing command too). The exec must end as a start failure with an exit code, as one whose
//   runtime explained itself does, not stay created with no pid and no exit.
// - One that does not report within the call's deadline (runc stuck, a loaded node). An exec's
//   start answers DEADLINE_EXCEEDED and the exec ends StartFailed with 126; a task's create answers
//   DEADLINE_EXCEEDED with nothing made. Neither conmon nor the runtime it ran is left to start the
//   process (or create the container) later with nobody waiting for it.
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTask, prepareExec, removeTask, type ShimWorld, startWorld } from './testing/fixture.js';

const ns = 'slowexec';
let w: ShimWorld;

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
  // `runc exec` of an exec named "quiet" exits 1 and says nothing; other execs, and `runc create`
  // of a task whose id starts with "hang-", hang for a minute before they run; everything else is
  // the real runc.
  w = await startWorld({
    wrap: {
      runc: [
        '#!/bin/sh',
        'case " $* " in',
        '  *"/execs/quiet/"*) exit 1 ;;',
        '  *" exec "*|*" create "*" hang-"*) sleep 60 ;;',
        'esac',
        'exec /usr/sbin/runc "$@"',
        '',
      ].join('\n'),
    },
    shim: { runtimeTimeoutMs: 4000 },
  });
});
afterAll(async () => {
  await w?.close();
});

/** The exec ended as a failed start: stopped, 126, reason StartFailed (state and wait agree). */
async function expectStartFailed(id: string, execId: string): Promise<void> {
  expect(await w.client.state({ namespace: ns, id, execId })).toMatchObject({
    status: 'stopped',
    exitCode: 126,
  });
  expect(await w.client.wait({ namespace: ns, id, execId }, { timeoutMs: 10_000 })).toMatchObject({
    exitCode: 126,
    reason: 'StartFailed',
  });
}

describe('exec start', () => {
  it('a runtime that fails without a word: the start fails, the exec ends StartFailed with 126', async () => {
    const { id } = await createTask(w, ns, ['sleep', '1000']);
    const execId = 'quiet';
    await prepareExec(w, ns, id, execId, ['true']);
    await expect(w.client.start({ namespace: ns, id, execId })).rejects.toMatchObject({
      code: 'FAILED_PRECONDITION',
      message: expect.stringContaining(`exec "${execId}" in task "${id}" failed`),
    });
    await expectStartFailed(id, execId);
    await w.client.delete({ namespace: ns, id, execId });
    await removeTask(w, ns, id);
  });

  it('past its deadline: DEADLINE_EXCEEDED, StartFailed 126, the monitor and runtime ended', async () => {
    const { id } = await createTask(w, ns, ['sleep', '1000']);
    const execId = 'slow';
    await prepareExec(w, ns, id, execId, ['sleep', '987']);
    await expect(w.client.start({ namespace: ns, id, execId })).rejects.toMatchObject({
      code: 'DEADLINE_EXCEEDED',
      message: expect.stringContaining(`exec "${execId}" in task "${id}": the runtime did not start it`),
    });
    await expectStartFailed(id, execId);
    // The hanging `runc exec` (under conmon) is gone with its monitor: it can never run the process.
    expect(processesWith('wrapped-runc').filter((p) => p.includes(' exec '))).toEqual([]);
    expect(processesWith('sleep 987')).toEqual([]);
    await w.client.delete({ namespace: ns, id, execId });
    await removeTask(w, ns, id);
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
