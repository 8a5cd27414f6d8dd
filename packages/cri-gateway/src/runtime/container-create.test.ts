import { BerthError, Code, type Container, type CreateContainerRequest, type ImageRecord } from '@berth/api';
import type { Logger } from '@berth/kit';
import { describe, expect, it } from 'vitest';
import type { ImagePort } from '../images/ports.js';
import { ContainerRuntime } from './containers.js';
import { CriKind, CriLabel, type SandboxMeta } from './meta.js';
import type { PodRuntime, Sandbox } from './pods.js';
import type { ShimPort, TaskPort } from './ports.js';

// ContainerRuntime.create against a task-service held in memory: the id the gateway chooses (and
// names the container's cgroup after), a task-service from before caller-chosen ids, and the undo
// of a create whose reply was lost.

const POD_ID = 'a1'.repeat(32);
const PARENT = '/kubepods/burstable/pod-u1';

const image = {
  name: 'docker.io/library/busybox:latest',
  configDigest: `sha256:${'b'.repeat(64)}`,
  target: { digest: `sha256:${'d'.repeat(64)}` },
  size: 1,
  config: {},
} as unknown as ImageRecord;

const sandbox: Sandbox = {
  info: {
    container: { id: POD_ID, labels: { [CriLabel.kind]: CriKind.sandbox } },
    status: 'running',
    task: { pid: 4242 },
  } as unknown as Sandbox['info'],
  meta: {
    metadata: { name: 'web', uid: 'u1', namespace: 'default', attempt: 0 },
    labels: {},
    annotations: {},
    hostname: 'web',
    logDirectory: '/var/log/pods/x',
    runtimeHandler: '',
    namespaceOptions: { network: 'POD', pid: 'CONTAINER', ipc: 'POD', target_id: '' },
    cgroupParent: PARENT,
    createdAt: '1',
    sharedShm: true,
  } as SandboxMeta,
};

const config = {
  metadata: { name: 'app', attempt: 0 },
  image: { image: 'busybox' },
  linux: { security_context: { namespace_options: { network: 'POD', pid: 'CONTAINER', ipc: 'POD' } } },
};

/**
 * The fakes. `mode`: a task-service that takes the gateway's id ('takes'), one before it that
 * picks its own ('own'), one that makes the record and whose reply is lost ('lost'), or one that
 * refuses the name ('refuses').
 */
function fakes(mode: 'takes' | 'own' | 'lost' | 'refuses') {
  const records = new Map<string, CreateContainerRequest>();
  const requests: CreateContainerRequest[] = [];
  const deletes: string[] = [];
  const tasks = {
    createContainer: async (req: CreateContainerRequest) => {
      requests.push(req);
      if (mode === 'refuses')
        throw new BerthError(Code.ALREADY_EXISTS, `container name "${req.name}" is in use`);
      const id = mode === 'own' || !req.id ? 'f'.repeat(64) : req.id;
      records.set(id, req);
      if (mode === 'lost') throw new BerthError(Code.DEADLINE_EXCEEDED, 'create-container timed out');
      return { id, name: req.name, labels: req.labels ?? {} } as unknown as Container;
    },
    deleteContainer: async (id: string) => {
      deletes.push(id);
      if (!records.delete(id)) throw new BerthError(Code.NOT_FOUND, `container ${id} not found`);
    },
  } as unknown as TaskPort;
  const images = { get: async () => image, list: async () => [image] } as unknown as ImagePort;
  const pods = { get: async () => sandbox, filesDir: () => '/nonexistent/p' } as unknown as PodRuntime;
  const runtime = new ContainerRuntime(
    {
      tasks,
      images,
      shim: {} as ShimPort,
      cgroups: async () => ({ version: 1, swapAccounting: false }),
      network: {} as never,
      sandboxImage: {} as never,
      containersDir: '/nonexistent',
      log: { warn: () => undefined, info: () => undefined } as unknown as Logger,
    },
    pods,
  );
  return { runtime, records, requests, deletes };
}

describe('ContainerRuntime.create', () => {
  it("makes the container under an id of its own choosing, its cgroup <cgroup_parent>/<id> as containerd's", async () => {
    const f = fakes('takes');
    const id = await f.runtime.create(POD_ID, config);
    expect(id).toMatch(/^[a-f0-9]{64}$/);
    expect(f.requests[0]).toMatchObject({ id, cgroupsPath: `${PARENT}/${id}` });
    expect([...f.records.keys()]).toEqual([id]);
    // Each create chooses anew.
    const other = await f.runtime.create(POD_ID, { ...config, metadata: { name: 'app', attempt: 1 } });
    expect(other).not.toBe(id);
  });

  it('fails FAILED_PRECONDITION with a task-service that picks its own ids, and leaves no container', async () => {
    const f = fakes('own');
    await expect(f.runtime.create(POD_ID, config)).rejects.toMatchObject({
      code: Code.FAILED_PRECONDITION,
      message: expect.stringMatching(/under its own id, not the gateway's .*upgrade every task-service/),
    });
    expect(f.records.size).toBe(0);
  });

  it('removes, by the id it chose, the record a create whose reply was lost made', async () => {
    const f = fakes('lost');
    await expect(f.runtime.create(POD_ID, config)).rejects.toMatchObject({ code: Code.DEADLINE_EXCEEDED });
    expect(f.deletes).toEqual([f.requests[0]?.id]);
    expect(f.records.size).toBe(0);
  });

  it('removes nothing when the task-service refused the create: it made nothing', async () => {
    const f = fakes('refuses');
    await expect(f.runtime.create(POD_ID, config)).rejects.toMatchObject({ code: Code.ALREADY_EXISTS });
    expect(f.deletes).toEqual([]);
  });
});
