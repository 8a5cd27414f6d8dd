// An exec whose runtime fails without a word on stderr (killed, or failing silently): conmon then
// closes its sync pipe with no message (2.1.6 here; 2.2.0 and 2.2.1 do so for every failed
// `runc exec`, a missing command too). The exec must end as a start failure with an exit code,
// as one whose runtime explained itself does, not stay created with no pid and no exit.
import { randomBytes } from 'node:crypto';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTask, type ShimWorld, startWorld } from './testing/fixture.js';

const ns = 'silent';
let w: ShimWorld;
let base: string;

beforeAll(async () => {
  base = join('/tmp', `berth-silent-${randomBytes(4).toString('hex')}`);
  await mkdir(base, { recursive: true });
  // `runc exec` exits 1 and says nothing; everything else is the real runc.
  await writeFile(
    join(base, 'runc'),
    '#!/bin/sh\nfor a; do [ "$a" = exec ] && exit 1; done\nexec /usr/sbin/runc "$@"\n',
    { mode: 0o755 },
  );
  w = await startWorld({ shim: { runc: join(base, 'runc') } });
});
afterAll(async () => {
  await w?.close();
  await rm(base, { recursive: true, force: true });
});

describe('exec start', () => {
  it('a runtime that fails without a word: the start fails, the exec ends StartFailed with 126', async () => {
    const { id } = await createTask(w, ns, ['sleep', '1000']);
    const execId = 'quiet';
    await w.client.exec({
      namespace: ns,
      id,
      execId,
      process: { args: ['true'], cwd: '/', env: ['PATH=/bin'] },
      terminal: false,
      stdin: false,
    });
    await expect(w.client.start({ namespace: ns, id, execId })).rejects.toMatchObject({
      code: 'FAILED_PRECONDITION',
      message: expect.stringContaining(`exec "${execId}" in task "${id}" failed`),
    });
    expect(await w.client.state({ namespace: ns, id, execId })).toMatchObject({
      status: 'stopped',
      exitCode: 126,
    });
    expect(await w.client.wait({ namespace: ns, id, execId }, { timeoutMs: 10_000 })).toMatchObject({
      exitCode: 126,
      reason: 'StartFailed',
    });
    await w.client.delete({ namespace: ns, id, execId });
    await w.client.kill({ namespace: ns, id, signal: 'SIGKILL', all: true });
    await w.client.wait({ namespace: ns, id });
    await w.client.delete({ namespace: ns, id });
  });
});
