import type { ContainerInfo } from '@berth/api';
import { describe, expect, it } from 'vitest';
import { toContainerStatus } from '../runtime/cri-status.js';
import { criContainerInfo, criImageRecord } from '../testdata/cri-records.js';
import { beforeReply } from './after-reply.js';
import { containerStatus, prepareContainerStatus } from './container-status.js';
import { createContainer } from './create-container.js';
import { encodingOf } from './encoded-reply.js';
import { imageStatus } from './image-status.js';
import { pullImage } from './pull-image.js';
import { startContainer } from './start-container.js';
import { stopContainer } from './stop-container.js';
import type { HandlerDeps } from './types.js';

// A write prepares the reply of the read that follows it, in the variant the last read asked
// for: start, stop and pull before their own reply, create after it; the read then answers the
// kept reply and its bytes.

const log = { debug: () => undefined, info: () => undefined };
const afterTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

function ctr(id: string, status: 'created' | 'running' | 'stopped'): ContainerInfo {
  return criContainerInfo(id, status === 'created' ? undefined : { status });
}

describe('replies prepared after a write', () => {
  it('create (after its reply), start and stop (before) prepare the status the next read answers', async () => {
    let info = ctr('c1', 'created');
    const reads: string[] = [];
    const deps = {
      log,
      containers: {
        create: async () => 'c1',
        start: async () => {
          info = ctr('c1', 'running');
        },
        stop: async () => {
          info = ctr('c1', 'stopped');
        },
        status: async (id: string) => {
          reads.push(id);
          return { status: toContainerStatus(info), info };
        },
      },
    } as unknown as HandlerDeps;
    // The last read was verbose: that is the variant prepared.
    await containerStatus({ container_id: 'c0', verbose: true }, deps);
    reads.length = 0;

    for (const [write, state, before] of [
      [() => createContainer({ pod_sandbox_id: 'p' }, deps), 'CONTAINER_CREATED', false],
      [() => startContainer({ container_id: 'c1' }, deps), 'CONTAINER_RUNNING', true],
      [() => stopContainer({ container_id: 'c1', timeout: 0 }, deps), 'CONTAINER_EXITED', true],
    ] as const) {
      await write();
      // Built by the time the reply is made (start, stop), or only once it has gone (create).
      expect(reads).toEqual(before ? ['c1'] : []);
      await afterTurn();
      expect(reads).toEqual(['c1']);
      reads.length = 0;
      const prepared = await prepareContainerStatus('c1', deps);
      const read = await containerStatus({ container_id: 'c1', verbose: true }, deps);
      expect(read).toBe(prepared);
      expect(encodingOf(read)).toBeDefined();
      expect((read as { status: { state: string } }).status.state).toBe(state);
      expect(JSON.parse(read.info.info ?? '').status).toBe(info.status);
      reads.length = 0;
    }
  });

  it('a pull prepares the image status of the name it pulled; a failure is dropped', async () => {
    const rec = criImageRecord();
    const gets: string[] = [];
    let fail = false;
    const deps = {
      log,
      images: {
        pull: async () => ({ image: rec, unpack: 'done' }),
        get: async (ref: string) => {
          gets.push(ref);
          if (fail) throw new Error('image-service gone');
          return rec;
        },
        list: async () => [rec],
      },
    } as unknown as HandlerDeps;
    await pullImage({ image: { image: 'busybox:1', annotations: {} } }, deps);
    // Prepared before the pull's reply.
    expect(gets.length).toBeGreaterThan(0);
    gets.length = 0;
    const kept = await imageStatus({ image: { image: 'busybox:1', annotations: {} } }, deps);
    expect(encodingOf(kept)).toBeDefined();
    expect(kept.image?.repo_tags).toEqual(['docker.io/library/busybox:1']);

    fail = true;
    // The image-service fails the prepare's read: dropped, the pull still answers.
    expect((await pullImage({ image: { image: 'busybox:1', annotations: {} } }, deps)).image_ref).toBe(
      'sha256:c1',
    );
  });

  it('a write answers without its prepared read when that read does not settle (a NATS read held up)', async () => {
    let settle: () => void = () => undefined;
    let done = false;
    const held = new Promise<void>((resolve) => {
      settle = resolve;
    }).then(() => {
      done = true;
    });
    // Resolves although the prepare never settles by itself (the test's timeout is the failure).
    await beforeReply({ log } as unknown as HandlerDeps, 'ContainerStatus', () => held);
    expect(done).toBe(false);
    settle();
    await held;
  });
});
