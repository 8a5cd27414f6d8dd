// conmon reports a bad option (one this conmon does not know: an older version than the shim's
// arguments assume) on stdout, not stderr. The create or exec must fail naming it, not with a
// bare "conmon closed its pipe".
import { randomBytes } from 'node:crypto';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTask, type ShimWorld, startWorld } from './testing/fixture.js';

const ns = 'conmonout';
const complaint = 'conmon: option parsing failed: Unknown option --frobnicate';
let w: ShimWorld;
let base: string;

beforeAll(async () => {
  base = join('/tmp', `berth-conmonout-${randomBytes(4).toString('hex')}`);
  await mkdir(base, { recursive: true });
  // The real conmon, but for a task whose id starts with "bad-" or an exec named "badopt": there
  // it answers as conmon answers an unknown option (stdout, exit 1).
  await writeFile(
    join(base, 'conmon'),
    `#!/bin/sh\ncase " $* " in *" bad-"*|*badopt*) echo "${complaint}"; exit 1;; esac\nexec /usr/bin/conmon "$@"\n`,
    { mode: 0o755 },
  );
  w = await startWorld({ shim: { conmon: join(base, 'conmon') } });
});
afterAll(async () => {
  await w?.close();
  await rm(base, { recursive: true, force: true });
});

describe('conmon refusing its options', () => {
  it('a task create fails with what conmon printed, and nothing is left', async () => {
    const id = `bad-${randomBytes(4).toString('hex')}`;
    await expect(createTask(w, ns, ['true'], { id })).rejects.toMatchObject({
      message: expect.stringContaining(complaint),
    });
    expect((await w.client.list({})).tasks.filter((t) => t.id === id)).toEqual([]);
  });

  it('an exec fails with what conmon printed', async () => {
    const { id } = await createTask(w, ns, ['sleep', '1000']);
    await expect(
      w.client.exec({
        namespace: ns,
        id,
        execId: 'badopt',
        process: { args: ['true'], cwd: '/', env: ['PATH=/bin'] },
        terminal: false,
        stdin: false,
      }),
    ).rejects.toMatchObject({ message: expect.stringContaining(complaint) });
    await w.client.kill({ namespace: ns, id, signal: 'SIGKILL', all: true });
    await w.client.wait({ namespace: ns, id });
    await w.client.delete({ namespace: ns, id });
  });
});
