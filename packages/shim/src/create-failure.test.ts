// A task whose command cannot be executed, with real runc (1.1.5 here) under conmon: its create
// fails naming the missing command, also when the container joins another process's PID namespace
// (as a CRI container sharing its pod's does), where runc logs its cleanup warnings ("cannot toggle
// freezer") before the error; nothing of the task is left.
import { type ChildProcess, spawn } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { codeOf, createTask, type ShimWorld, startWorld } from './testing/fixture.js';

const ns = 'createfail';
let w: ShimWorld;
let holder: ChildProcess;

beforeAll(async () => {
  w = await startWorld();
  // The PID namespace a task may join (this test's own): a process that lives as long as the tests.
  holder = spawn('sleep', ['600'], { stdio: 'ignore' });
});
afterAll(async () => {
  holder?.kill('SIGKILL');
  await w?.close();
});

/** Makes the spec join the holder's PID namespace instead of a new one. */
function sharePid(spec: Record<string, unknown>): void {
  const linux = spec.linux as { namespaces: { type: string; path?: string }[] };
  linux.namespaces = linux.namespaces.map((n) =>
    n.type === 'pid' ? { type: 'pid', path: `/proc/${holder.pid}/ns/pid` } : n,
  );
}

describe('a task whose command cannot be executed', () => {
  for (const [what, editSpec] of [
    ['in a PID namespace of its own', undefined],
    ["in another process's PID namespace", sharePid],
  ] as const) {
    for (const [cmd, cause] of [
      ['/no/such/binary', 'exec: "/no/such/binary": stat /no/such/binary: no such file or directory'],
      ['nosuchcmd', 'exec: "nosuchcmd": executable file not found in $PATH'],
    ] as const) {
      it(`${what}: ${cmd} fails the create with runc's cause`, async () => {
        const err = await createTask(w, ns, [cmd], { start: false, ...(editSpec ? { editSpec } : {}) }).then(
          () => undefined,
          (e: unknown) => e as Error & { code?: string },
        );
        expect(err?.message).toContain(cause);
        expect(err?.message).not.toContain('freezer');
        expect(err?.code).toBe('INVALID_ARGUMENT');
        expect((await w.client.list({ namespace: ns })).tasks ?? []).toEqual([]);
      });
    }
  }
  it('leaves nothing: the id can be created again', async () => {
    const id = 'f'.repeat(32);
    await expect(
      createTask(w, ns, ['/no/such/binary'], { id, start: false, editSpec: sharePid }),
    ).rejects.toThrow();
    expect(await codeOf(w.client.state({ namespace: ns, id }))).toBe('NOT_FOUND');
  });
});
