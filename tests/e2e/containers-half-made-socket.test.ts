// A `run` whose shim dies while it holds the create, with the services calling each other over the
// node's sockets (the default sameNodeCalls; containers-half-made.test.ts runs the same story over
// NATS). The shim's runc is a wrapper whose `create` marks a file and waits, so the test knows the
// shim has taken the request; SIGKILLed then, its socket closes and the task-service hears of it at
// once (UNAVAILABLE, "lost while answering"), rolls back what it can and leaves the rest to the
// reconcile once the shim is back.
import { existsSync } from 'node:fs';
import { chmod, mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Code } from '@berth/api';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ContainerStack, snapshotState, startContainerStack, until } from './containers-stack.js';

let IMAGE = 'berth.test/busybox:latest';
let s: ContainerStack;
let dir = '';
let marker = '';

beforeAll(async () => {
  dir = join('/tmp', `berth-runc-wrap-${process.pid}`);
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  marker = join(dir, 'creating');
  const wrapper = join(dir, 'runc');
  await writeFile(
    wrapper,
    [
      '#!/bin/sh',
      '# runc, except that a create marks a file and waits while it exists (then fails)',
      'for a in "$@"; do',
      `  if [ "$a" = create ]; then touch ${marker}; while [ -e ${marker} ]; do sleep 0.05; done; exit 1; fi`,
      'done',
      'exec /usr/sbin/runc "$@"',
      '',
    ].join('\n'),
  );
  await chmod(wrapper, 0o755);
  s = await startContainerStack({
    config: {
      services: {
        'task-service': { reconcileIntervalMs: 300, containerLockTtlMs: 5000 },
        shim: { runc: wrapper },
      },
    },
  });
  IMAGE = (await s.importBusybox(IMAGE)).name;
}, 120_000);
afterAll(async () => {
  await rm(marker, { force: true });
  await s?.stop();
  await rm(dir, { recursive: true, force: true });
}, 60_000);

const run = (...args: string[]) => s.berth(args);

describe('run during a shim kill, over the node sockets', () => {
  it('fails at once with UNAVAILABLE from the closed connection; the reconcile removes the rest', async () => {
    const running = run('run', '-d', '--network', 'none', '--name', 'sock-killed', IMAGE, 'sleep', '300');
    await until('the shim to run the create', async () => existsSync(marker));
    const inspect = await run('inspect', 'sock-killed');
    expect(inspect.code, inspect.stderr).toBe(0);
    const id = (JSON.parse(inspect.stdout)[0] as { container: { id: string } }).container.id;
    await s.kill('shim', 'SIGKILL');
    const killedAt = Date.now();
    const r = await running;
    expect(r.code).not.toBe(0);
    // Not the heartbeats' 5 s stall: the socket closed with the process.
    expect(r.stderr).toContain('shim on this node was lost while answering "create"');
    expect(Date.now() - killedAt).toBeLessThan(5_000);
    await rm(marker, { force: true });

    await s.start('shim');
    await until('the reconcile to finish the removal', async () => (await run('inspect', id)).code === 1);
    expect(await snapshotState(s, `containers/default/${id}`)).toBe(Code.NOT_FOUND);
  }, 120_000);
});
