import type { ContainerInfo, ImageRecord } from '@berth/api';
import { describe, expect, it } from 'vitest';
import { CriService, criServiceDefinition } from '../proto.js';
import { toContainerStatus, toPodSandboxStatus } from '../runtime/cri-status.js';
import { CriKind, CriLabel } from '../runtime/meta.js';
import { criContainerInfo, criImageRecord } from '../testdata/cri-records.js';
import { containerStatus } from './container-status.js';
import { encodingOf, ReplyMemo, varintField } from './encoded-reply.js';
import { imageStatus } from './image-status.js';
import { listImages } from './list-images.js';
import { podSandboxStatus } from './pod-sandbox-status.js';
import type { HandlerDeps } from './types.js';

// Replies kept with their bytes: what the servers write must be what proto-loader encodes for the
// reply, and a record replaced by its owner (a new object) must never be answered from the old one.

const runtime = criServiceDefinition(CriService.runtime);
const image = criServiceDefinition(CriService.image);

/** The reply as the client decodes the bytes the servers would write for it. */
function wire(
  method: { responseSerialize(m: unknown): Buffer; responseDeserialize(b: Buffer): unknown },
  r: object,
) {
  const bytes = encodingOf(r);
  expect(bytes, 'the handler kept the bytes of its reply').toBeDefined();
  // The kept bytes encode exactly the reply object the handler returned.
  expect(method.responseDeserialize(bytes as Buffer)).toEqual(
    method.responseDeserialize(method.responseSerialize({ ...r })),
  );
  return method.responseDeserialize(bytes as Buffer) as Record<string, unknown>;
}

function ctr(id: string, task?: { status: 'running' | 'stopped'; exitCode?: number }): ContainerInfo {
  return criContainerInfo(id, task, { l: 'v', über: 'naïve → ✓' });
}

function pod(id: string, status: 'running' | 'stopped'): ContainerInfo {
  const meta = {
    metadata: { name: 'p', uid: 'u', namespace: 'ns', attempt: 0 },
    labels: {},
    annotations: {},
    runtimeHandler: '',
    namespaceOptions: { network: 'POD', pid: 'POD', ipc: 'POD', target_id: '' },
    ips: ['10.88.0.2'],
    createdAt: '1000',
  };
  const container = {
    id,
    labels: { [CriLabel.kind]: CriKind.sandbox, [CriLabel.meta]: JSON.stringify(meta) },
  } as unknown as ContainerInfo['container'];
  return { container, task: { id, status, pid: 3 }, status } as unknown as ContainerInfo;
}

describe('ReplyMemo', () => {
  it('keeps a reply while key, variant and parts are the same objects, and only then', () => {
    let made = 0;
    const memo = new ReplyMemo<object, { n: number }>((r) => Buffer.from([r.n]));
    const k1 = {};
    const part = {};
    const a = memo.get(k1, '', [part], () => ({ n: ++made }));
    expect(memo.get(k1, '', [part], () => ({ n: ++made }))).toBe(a);
    expect(encodingOf(a)).toEqual(Buffer.from([1]));
    // Another variant, another part, another key: each made anew.
    expect(memo.get(k1, 'verbose', [part], () => ({ n: ++made })).n).toBe(2);
    expect(memo.get(k1, '', [{}], () => ({ n: ++made })).n).toBe(3);
    expect(memo.get({}, '', [part], () => ({ n: ++made })).n).toBe(4);
    expect(memo.get(k1, '', [part, part], () => ({ n: ++made })).n).toBe(5);
  });
});

describe('varintField', () => {
  it('encodes an int64 as protobufjs decodes it, up to 2^63-1', () => {
    const method = runtime.PodSandboxStatus as unknown as {
      responseDeserialize(b: Buffer): { timestamp: string };
    };
    for (const n of [0n, 1n, 127n, 128n, 1_764_637_200_123_000_000n, 2n ** 63n - 1n]) {
      expect(method.responseDeserialize(varintField(4, n)).timestamp).toBe(n.toString());
    }
    expect(() => varintField(4, -1n)).toThrow(RangeError);
  });
});

describe('status replies kept with their bytes', () => {
  it('ContainerStatus answers a replaced record at once, verbose or not', async () => {
    let info = ctr('c1', { status: 'running' });
    const deps = {
      containers: { status: async () => ({ status: toContainerStatus(info), info }) },
    } as unknown as HandlerDeps;
    const method = runtime.ContainerStatus as never;
    const r1 = await containerStatus({ container_id: 'c1', verbose: true }, deps);
    expect(await containerStatus({ container_id: 'c1', verbose: true }, deps)).toBe(r1);
    const w1 = wire(method, r1);
    expect((w1.status as { state: string }).state).toBe('CONTAINER_RUNNING');
    // containerd's keys first, the spec moved to runtimeSpec, then berth's record.
    const { spec, ...container } = info.container;
    expect(JSON.parse((w1.info as { info: string }).info)).toEqual({
      sandboxID: '',
      pid: 7,
      runtimeSpec: spec,
      ...info,
      container,
    });
    const plain = wire(method, await containerStatus({ container_id: 'c1' }, deps));
    expect(plain.info).toEqual({});

    // The view replaces the record (the exit): the next read shows it.
    info = ctr('c1', { status: 'stopped', exitCode: 3 });
    const r2 = await containerStatus({ container_id: 'c1', verbose: true }, deps);
    expect(r2).not.toBe(r1);
    const w2 = wire(method, r2);
    expect(w2.status).toMatchObject({ state: 'CONTAINER_EXITED', exit_code: 3, reason: 'Error' });
    const rec2 = JSON.parse((w2.info as { info: string }).info);
    expect(rec2.task.exitCode).toBe(3);
    // Exited: no pid to enter (berth's record keeps it; the process and its pid are gone).
    expect(rec2.pid).toBe(0);
  });

  it('PodSandboxStatus follows its pod and its containers, with a fresh timestamp', async () => {
    let sb = pod('p1', 'running');
    let containers = [ctr('c1', { status: 'running' })];
    const deps = {
      pods: {
        status: async () => ({
          status: toPodSandboxStatus(sb),
          info: sb,
          containers: containers.map(toContainerStatus),
        }),
      },
    } as unknown as HandlerDeps;
    const method = runtime.PodSandboxStatus as never;
    const w1 = wire(method, await podSandboxStatus({ pod_sandbox_id: 'p1' }, deps));
    expect(w1.status).toMatchObject({ state: 'SANDBOX_READY', network: { ip: '10.88.0.2' } });
    expect(w1.containers_statuses).toHaveLength(1);
    expect(BigInt(w1.timestamp as string)).toBeGreaterThan(0n);

    containers = [...containers, ctr('c2')];
    const w2 = wire(method, await podSandboxStatus({ pod_sandbox_id: 'p1' }, deps));
    expect((w2.containers_statuses as { id: string; state: string }[]).map((c) => [c.id, c.state])).toEqual([
      ['c1', 'CONTAINER_RUNNING'],
      ['c2', 'CONTAINER_CREATED'],
    ]);
    sb = pod('p1', 'stopped');
    const w3 = wire(method, await podSandboxStatus({ pod_sandbox_id: 'p1', verbose: true }, deps));
    expect((w3.status as { state: string }).state).toBe('SANDBOX_NOTREADY');
    expect(JSON.parse((w3.info as { info: string }).info).status).toBe('stopped');
  });

  it('ImageStatus and ListImages follow the image records', async () => {
    const rec = (name: string, size: number) =>
      ({
        name,
        configDigest: 'sha256:c1',
        target: { digest: 'sha256:m1' },
        size,
        config: {},
        updatedAt: '2026-12-02T01:00:00.000Z',
      }) as unknown as ImageRecord;
    let records = [rec('docker.io/library/busybox:1', 10)];
    const images = {
      get: async () => records[0],
      list: async () => records,
    };
    const deps = { images } as unknown as HandlerDeps;
    const spec = { image: 'busybox:1', annotations: {} };
    const s1 = wire(image.ImageStatus as never, await imageStatus({ image: spec }, deps));
    expect(s1.image).toMatchObject({ size: '10', repo_tags: ['docker.io/library/busybox:1'] });
    const l1 = wire(image.ListImages as never, await listImages({}, deps));
    expect(l1.images).toHaveLength(1);

    // A second name and a new record of the first: both replies show them.
    records = [rec('docker.io/library/busybox:1', 11), rec('docker.io/library/busybox:2', 11)];
    const s2 = wire(image.ImageStatus as never, await imageStatus({ image: spec }, deps));
    expect(s2.image).toMatchObject({
      size: '11',
      repo_tags: ['docker.io/library/busybox:1', 'docker.io/library/busybox:2'],
    });
    const l2 = wire(image.ListImages as never, await listImages({}, deps));
    expect((l2.images as { repo_tags: string[] }[])[0]?.repo_tags).toHaveLength(2);
  });

  it('ImageStatus and ListImages answer at once from a port that holds the images, as their promises would', async () => {
    const rec = criImageRecord();
    let held = true;
    const images = {
      get: async () => rec,
      list: async () => [rec],
      getNow: () => (held ? rec : undefined),
      listNow: () => (held ? [rec] : undefined),
    };
    const deps = { images } as unknown as HandlerDeps;
    const spec = { image: 'busybox:1', annotations: {} };
    const now = imageStatus({ image: spec }, deps);
    expect(now).not.toBeInstanceOf(Promise);
    wire(image.ImageStatus as never, now as object);
    const list = listImages({}, deps);
    const filtered = listImages({ filter: { image: spec } }, deps);
    expect(list).not.toBeInstanceOf(Promise);
    expect(filtered).not.toBeInstanceOf(Promise);
    expect((wire(image.ListImages as never, list as object).images as unknown[]).length).toBe(1);
    // What they cannot tell at once (a refresh in flight) comes in a promise: the same kept reply.
    held = false;
    const later = imageStatus({ image: spec }, deps);
    expect(later).toBeInstanceOf(Promise);
    expect(await later).toBe(now);
    expect(await listImages({}, deps)).toBe(list);
    expect(await listImages({ filter: { image: spec } }, deps)).toBe(filtered);
  });
});
