import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BerthError, Code } from '@berth/api';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Runc } from './runc.js';

let root: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'berth-runc-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

/** A runc stand-in: a script with this body. */
async function fakeRunc(name: string, body: string): Promise<string> {
  const path = join(root, name);
  await writeFile(path, `#!/bin/sh\n${body}\n`, { mode: 0o755 });
  return path;
}

describe('Runc error codes', () => {
  it('a runc killed at its deadline is DEADLINE_EXCEEDED, naming the task and the deadline', async () => {
    const runc = new Runc(join(root, 'state'), await fakeRunc('hang', 'sleep 30'), 200);
    const err = await runc.kill('c1', 'SIGTERM', false).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BerthError);
    expect((err as BerthError).code).toBe(Code.DEADLINE_EXCEEDED);
    expect((err as BerthError).message).toMatch(
      /^task "c1": runc kill failed: .* did not end within 200 ms: killed$/,
    );
  });

  it('a runc that fails is FAILED_PRECONDITION, or NOT_FOUND for a container that is gone', async () => {
    const refused = new Runc(
      root,
      await fakeRunc('refuse', 'echo \'level=error msg="cannot pause"\' >&2; exit 1'),
    );
    expect(await refused.pause('c1').catch((e: BerthError) => e.code)).toBe(Code.FAILED_PRECONDITION);
    const gone = new Runc(
      root,
      await fakeRunc('gone', 'echo \'level=error msg="container does not exist"\' >&2; exit 1'),
    );
    expect(await gone.pause('c1').catch((e: BerthError) => e.code)).toBe(Code.NOT_FOUND);
  });
});
