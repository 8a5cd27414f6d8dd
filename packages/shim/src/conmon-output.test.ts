// conmon reports a bad option (one this conmon does not know: an older version than the shim's
// arguments assume) on stdout, not stderr. The create or exec must fail naming it, not with a
// bare "conmon closed its pipe".
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTask, prepareExec, removeTask, type ShimWorld, startWorld } from './testing/fixture.js';

const ns = 'conmonout';
const complaint = 'conmon: option parsing failed: Unknown option --frobnicate';
let w: ShimWorld;

beforeAll(async () => {
  // The real conmon, but for a task whose id starts with "bad-" or an exec named "badopt": there
  // it answers as conmon answers an unknown option (stdout, exit 1).
  w = await startWorld({
    wrap: {
      conmon: `#!/bin/sh\ncase " $* " in *" bad-"*|*badopt*) echo "${complaint}"; exit 1;; esac\nexec /usr/bin/conmon "$@"\n`,
    },
  });
});
afterAll(async () => {
  await w?.close();
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
    await expect(prepareExec(w, ns, id, 'badopt', ['true'])).rejects.toMatchObject({
      message: expect.stringContaining(complaint),
    });
    await removeTask(w, ns, id);
  });
});
