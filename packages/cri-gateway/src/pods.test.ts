import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, readdirSync, readFileSync, readlinkSync, renameSync, writeFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { type ListContainersReply, Service } from '@berth/api';
import { call, createLogger } from '@berth/kit';
import type { ClientReadableStream, ServiceError } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CRI_NAMESPACE } from './images/ports.js';
import { natsTaskPort } from './runtime/nats-ports.js';
import { LoopbackNetwork } from './runtime/netns.js';
import { PodRuntime } from './runtime/pods.js';
import { type RuntimeStack, runcIds, startRuntimeStack } from './testdata/runtime-stack.js';

// CRI pods and containers end to end: a grpc-js client on the gateway's socket, the real
// image-, snapshot- and task-services and shim (runc under conmon), NATS and Redis.

const SANDBOX_IMAGE = 'registry.test/pause:t1';
const BUSYBOX = 'localhost/busybox:cri';

let s: RuntimeStack;
let logDir: string;

type Json = Record<string, unknown>;
const rpc = <T = Json>(method: string, req: unknown) => s.client.unary<T>(s.client.runtime, method, req);
const grpcError = (p: Promise<unknown>): Promise<ServiceError> =>
  p.then(
    () => {
      throw new Error('expected the call to fail');
    },
    (e: unknown) => e as ServiceError,
  );
const NOT_FOUND = 5;
const ALREADY_EXISTS = 6;
const INVALID_ARGUMENT = 3;
const DEADLINE_EXCEEDED = 4;

function podConfig(name: string, extra: Json = {}): Json {
  return {
    metadata: { name, uid: `uid-${name}`, namespace: 'default', attempt: 0 },
    hostname: name,
    log_directory: join(logDir, name),
    dns_config: { servers: ['10.0.0.10'], searches: ['svc.cluster.local'], options: ['ndots:5'] },
    labels: { app: name, 'io.kubernetes.pod.name': name },
    annotations: { 'example.com/note': 'kept as is: {"json": true}' },
    linux: { security_context: { namespace_options: { network: 'POD', pid: 'CONTAINER', ipc: 'POD' } } },
    ...extra,
  };
}

function ctrConfig(name: string, extra: Json = {}): Json {
  return {
    metadata: { name, attempt: 0 },
    image: { image: BUSYBOX },
    command: ['sh', '-c', 'echo hi; exec sleep 1000'],
    log_path: `${name}/0.log`,
    labels: { ctr: name },
    annotations: { 'ctr.example.com/a': 'b' },
    // As the kubelet does: the container repeats the pod's namespace options.
    linux: { security_context: { namespace_options: { network: 'POD', pid: 'CONTAINER', ipc: 'POD' } } },
    ...extra,
  };
}

async function runPod(name: string, extra: Json = {}): Promise<string> {
  const r = await rpc<{ pod_sandbox_id: string }>('RunPodSandbox', { config: podConfig(name, extra) });
  return r.pod_sandbox_id;
}

async function createCtr(pod: string, podName: string, name: string, extra: Json = {}): Promise<string> {
  const r = await rpc<{ container_id: string }>('CreateContainer', {
    pod_sandbox_id: pod,
    config: ctrConfig(name, extra),
    sandbox_config: podConfig(podName),
  });
  return r.container_id;
}

const ctrStatus = async (id: string) =>
  (await rpc<{ status: Json }>('ContainerStatus', { container_id: id })).status;
const exec = (id: string, cmd: string[], timeout = 10) =>
  rpc<{ stdout: Buffer; stderr: Buffer; exit_code: number }>('ExecSync', { container_id: id, cmd, timeout });

/** Polls until `check` returns a truthy value (bounded). */
async function until<T>(what: string, check: () => T | Promise<T>, ms = 20_000): Promise<NonNullable<T>> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v) return v as NonNullable<T>;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Every container the task-service holds in the CRI namespace. */
async function berthContainers(): Promise<string[]> {
  const r = await call<ListContainersReply>(
    s.nc,
    Service.task,
    'list-containers',
    {},
    {
      namespace: CRI_NAMESPACE,
      timeoutMs: 10_000,
    },
  );
  return r.containers.map((c) => c.container.id);
}

beforeAll(async () => {
  s = await startRuntimeStack({ sandboxImage: SANDBOX_IMAGE });
  logDir = join(s.root, 'pod-logs');
  await mkdir(logDir, { recursive: true });
  await s.importBusybox(BUSYBOX);
}, 180_000);

afterAll(async () => {
  await s?.stop();
}, 60_000);

describe('CRI pod sandbox and container lifecycle', () => {
  let pod: string;
  let ctr: string;

  it('runs a pod sandbox on a pause image it built itself', async () => {
    pod = await runPod('web');
    expect(pod).toMatch(/^[a-f0-9]{64}$/);
    const image = await s.client.unary<{ image: { id: string; pinned: boolean } | null }>(
      s.client.image,
      'ImageStatus',
      { image: { image: SANDBOX_IMAGE } },
    );
    expect(image.image?.id).toMatch(/^sha256:/);
    expect(image.image?.pinned).toBe(true);
    const st = await rpc<{ status: Json }>('PodSandboxStatus', { pod_sandbox_id: pod });
    expect(st.status).toMatchObject({
      id: pod,
      metadata: { name: 'web', uid: 'uid-web', namespace: 'default', attempt: 0 },
      state: 'SANDBOX_READY',
      labels: { app: 'web', 'io.kubernetes.pod.name': 'web' },
      annotations: { 'example.com/note': 'kept as is: {"json": true}' },
      runtime_handler: '',
      linux: { namespaces: { options: { network: 'POD', pid: 'CONTAINER', ipc: 'POD' } } },
    });
    expect(BigInt(st.status.created_at as string)).toBeGreaterThan(0n);
  });

  it('lists pods by id prefix, state and label selector', async () => {
    const list = async (filter: Json) =>
      (await rpc<{ items: { id: string }[] }>('ListPodSandbox', { filter })).items.map((i) => i.id);
    expect(await list({})).toEqual([pod]);
    expect(await list({ id: pod.slice(0, 8) })).toEqual([pod]);
    expect(await list({ id: 'ffff' + pod.slice(4, 8) })).toEqual([]);
    expect(await list({ state: { state: 'SANDBOX_READY' } })).toEqual([pod]);
    expect(await list({ state: { state: 'SANDBOX_NOTREADY' } })).toEqual([]);
    expect(await list({ label_selector: { app: 'web' } })).toEqual([pod]);
    expect(await list({ label_selector: { app: 'db' } })).toEqual([]);
  });

  it('creates and starts a container that logs in CRI format', async () => {
    ctr = await createCtr(pod, 'web', 'app', {
      envs: [{ key: 'GREETING', value: Buffer.from('hello world') }],
    });
    expect((await ctrStatus(ctr)).state).toBe('CONTAINER_CREATED');
    await rpc('StartContainer', { container_id: ctr });
    const st = await ctrStatus(ctr);
    expect(st).toMatchObject({
      id: ctr,
      metadata: { name: 'app', attempt: 0 },
      state: 'CONTAINER_RUNNING',
      image: { image: BUSYBOX },
      labels: { ctr: 'app' },
      annotations: { 'ctr.example.com/a': 'b' },
      log_path: join(logDir, 'web', 'app', '0.log'),
    });
    expect(st.image_ref).toMatch(/^sha256:[a-f0-9]{64}$/);
    expect(BigInt(st.started_at as string)).toBeGreaterThan(0n);
    const log = await until('the CRI log line', () => {
      const f = join(logDir, 'web', 'app', '0.log');
      return existsSync(f) && readFileSync(f, 'utf8').includes(' stdout F hi\n') && readFileSync(f, 'utf8');
    });
    expect(log).toMatch(/^\d{4}-\d\d-\d\dT\S+ stdout F hi\n$/);
    const listed = await rpc<{ containers: Json[] }>('ListContainers', { filter: { pod_sandbox_id: pod } });
    expect(listed.containers.map((c) => c.id)).toEqual([ctr]);
  });

  it('ExecSync answers output and exit code, inside the pod', async () => {
    const r = await exec(ctr, ['sh', '-c', 'echo $GREETING; echo err >&2; exit 3']);
    expect(Buffer.from(r.stdout).toString()).toBe('hello world\n');
    expect(Buffer.from(r.stderr).toString()).toBe('err\n');
    expect(r.exit_code).toBe(3);
    expect(Buffer.from((await exec(ctr, ['hostname'])).stdout).toString()).toBe('web\n');
    const resolv = Buffer.from((await exec(ctr, ['cat', '/etc/resolv.conf'])).stdout).toString();
    expect(resolv).toContain('nameserver 10.0.0.10');
    expect(resolv).toContain('search svc.cluster.local');
    // Past NATS's 1 MB max_payload: the gateway reads the exec's log on its node.
    const big = await exec(ctr, ['sh', '-c', 'head -c 3000000 /dev/zero | tr "\\0" a; echo']);
    expect(big.exit_code).toBe(0);
    expect(Buffer.from(big.stdout).toString()).toBe(`${'a'.repeat(3_000_000)}\n`);
    const err = await grpcError(exec(ctr, ['sleep', '30'], 1));
    expect(err.code).toBe(DEADLINE_EXCEEDED);
  });

  it('refuses a second container of the same name and attempt, leaving nothing behind', async () => {
    const before = await berthContainers();
    const err = await grpcError(createCtr(pod, 'web', 'app'));
    expect(err.code).toBe(ALREADY_EXISTS);
    expect(err.details).toContain('"app"');
    expect(await berthContainers()).toEqual(before);
  });

  it('stops a container that ignores SIGTERM with SIGKILL after the timeout', async () => {
    await rpc('StopContainer', { container_id: ctr, timeout: 1 });
    const st = await ctrStatus(ctr);
    expect(st).toMatchObject({ state: 'CONTAINER_EXITED', exit_code: 137, reason: 'Error' });
    expect(BigInt(st.finished_at as string)).toBeGreaterThanOrEqual(BigInt(st.started_at as string));
    await rpc('StopContainer', { container_id: ctr, timeout: 1 });
  });

  it('removes the container, twice', async () => {
    await rpc('RemoveContainer', { container_id: ctr });
    await rpc('RemoveContainer', { container_id: ctr });
    expect((await grpcError(ctrStatus(ctr))).code).toBe(NOT_FOUND);
    expect((await rpc<{ containers: Json[] }>('ListContainers', {})).containers).toEqual([]);
  });

  it('stops and removes the pod, each twice, leaving no container, runc state or netns', async () => {
    const second = await createCtr(pod, 'web', 'second');
    await rpc('StartContainer', { container_id: second });
    await rpc('StopPodSandbox', { pod_sandbox_id: pod });
    expect((await ctrStatus(second)).state).toBe('CONTAINER_EXITED');
    const st = await rpc<{ status: Json }>('PodSandboxStatus', { pod_sandbox_id: pod });
    expect(st.status.state).toBe('SANDBOX_NOTREADY');
    await rpc('StopPodSandbox', { pod_sandbox_id: pod });
    await rpc('RemovePodSandbox', { pod_sandbox_id: pod });
    await rpc('RemovePodSandbox', { pod_sandbox_id: pod });
    expect((await grpcError(rpc('PodSandboxStatus', { pod_sandbox_id: pod }))).code).toBe(NOT_FOUND);
    expect(await berthContainers()).toEqual([]);
    expect(runcIds(s.stateRoot)).toEqual([]);
    const netns = join(s.runRoot, 'netns');
    expect(existsSync(netns) ? readdirSync(netns) : []).toEqual([]);
  });
});

describe('CRI namespaces of pods and containers', () => {
  const ns = async (id: string, type: string) =>
    Buffer.from((await exec(id, ['readlink', `/proc/self/ns/${type}`])).stdout)
      .toString()
      .trim();
  const hostNs = (type: string) => readlinkSync(`/proc/self/ns/${type}`);

  it('shares the pod PID namespace when the pod asks POD: the pause process is PID 1', async () => {
    const ctrNs = { network: 'POD', pid: 'POD', ipc: 'POD' };
    const pod = await runPod('shared', {
      linux: { security_context: { namespace_options: ctrNs } },
    });
    const c = await createCtr(pod, 'shared', 'a', {
      linux: { security_context: { namespace_options: ctrNs } },
    });
    await rpc('StartContainer', { container_id: c });
    const cmdline = Buffer.from((await exec(c, ['cat', '/proc/1/cmdline'])).stdout).toString();
    expect(cmdline.split('\0').filter(Boolean)).toEqual(['/pause', '-P']);
    const other = await createCtr(pod, 'shared', 'b', {
      linux: { security_context: { namespace_options: ctrNs } },
    });
    await rpc('StartContainer', { container_id: other });
    for (const t of ['pid', 'ipc', 'uts', 'net']) expect(await ns(c, t), t).toBe(await ns(other, t));
    expect(await ns(c, 'net')).not.toBe(hostNs('net'));
    // Not PID 1 here, so SIGTERM's default action ends it: 143, before the timeout.
    await rpc('StopContainer', { container_id: c, timeout: 30 });
    expect(await ctrStatus(c)).toMatchObject({ state: 'CONTAINER_EXITED', exit_code: 143, reason: 'Error' });
    await rpc('StopPodSandbox', { pod_sandbox_id: pod });
    await rpc('RemovePodSandbox', { pod_sandbox_id: pod });
  });

  it('runs a host-network pod in the node network with the node host name', async () => {
    const host = { network: 'NODE', pid: 'CONTAINER', ipc: 'POD' };
    const pod = await runPod('hostnet', {
      hostname: '',
      dns_config: null,
      linux: { security_context: { namespace_options: host } },
    });
    const c = await createCtr(pod, 'hostnet', 'a', {
      linux: { security_context: { namespace_options: host } },
    });
    await rpc('StartContainer', { container_id: c });
    expect(await ns(c, 'net')).toBe(hostNs('net'));
    expect(Buffer.from((await exec(c, ['hostname'])).stdout).toString()).toBe(`${hostname()}\n`);
    const st = await rpc<{ status: Json }>('PodSandboxStatus', { pod_sandbox_id: pod });
    expect(st.status.linux).toMatchObject({ namespaces: { options: { ...host, target_id: '' } } });
    await rpc('RemovePodSandbox', { pod_sandbox_id: pod });
    expect((await grpcError(ctrStatus(c))).code).toBe(NOT_FOUND);
  });
});

describe('CRI container settings, updates, log reopening and stats', () => {
  let pod: string;
  const parent = `/berth-cri-test-${process.pid}`;

  beforeAll(async () => {
    pod = await runPod('opts', {
      linux: {
        cgroup_parent: parent,
        sysctls: { 'net.ipv4.ip_unprivileged_port_start': '0' },
        security_context: { namespace_options: { network: 'POD', pid: 'CONTAINER', ipc: 'POD' } },
      },
    });
  });

  afterAll(async () => {
    if (pod) await rpc('RemovePodSandbox', { pod_sandbox_id: pod });
  });

  /** The host pid of a container's task (from the verbose status: berth's record). */
  const pidOf = async (id: string) => {
    const r = await rpc<{ info: { info: string } }>('ContainerStatus', { container_id: id, verbose: true });
    return (JSON.parse(r.info.info) as { task: { pid: number } }).task.pid;
  };
  /** The cgroup path of a process, in the memory hierarchy (cgroup v1) or the unified one (v2). */
  const cgroupOf = (pid: number) => {
    const lines = readFileSync(`/proc/${pid}/cgroup`, 'utf8').split('\n');
    const v1 = lines.map((l) => /^\d+:memory:(.*)$/.exec(l)?.[1]).find((x) => x !== undefined);
    const v2 = lines.find((l) => l.startsWith('0::'))?.slice(3) ?? '';
    return v1 !== undefined
      ? { path: v1, memoryLimit: join('/sys/fs/cgroup/memory', v1, 'memory.limit_in_bytes') }
      : { path: v2, memoryLimit: join('/sys/fs/cgroup', v2, 'memory.max') };
  };

  it('applies user, groups, read-only rootfs, sysctls and the cgroup parent', async () => {
    const c = await createCtr(pod, 'opts', 'user', {
      linux: {
        security_context: {
          run_as_user: { value: 1000 },
          run_as_group: { value: 2000 },
          supplemental_groups: [3000],
          readonly_rootfs: true,
          namespace_options: { network: 'POD', pid: 'CONTAINER', ipc: 'POD' },
        },
      },
    });
    await rpc('StartContainer', { container_id: c });
    const id = Buffer.from((await exec(c, ['id'])).stdout).toString();
    expect(id).toMatch(/^uid=1000 gid=2000 groups=.*3000/);
    expect((await exec(c, ['touch', '/x'])).exit_code).not.toBe(0);
    const sysctl = await exec(c, ['cat', '/proc/sys/net/ipv4/ip_unprivileged_port_start']);
    expect(Buffer.from(sysctl.stdout).toString()).toBe('0\n');
    expect(cgroupOf(await pidOf(c)).path.startsWith(`${parent}/k8s-ctr-`)).toBe(true);
  });

  it("updates a running container's memory limit in its cgroup", async () => {
    const c = await createCtr(pod, 'opts', 'limits');
    await rpc('StartContainer', { container_id: c });
    await rpc('UpdateContainerResources', {
      container_id: c,
      linux: { memory_limit_in_bytes: String(96 * 1024 * 1024) },
    });
    const max = readFileSync(cgroupOf(await pidOf(c)).memoryLimit, 'utf8').trim();
    expect(max).toBe(String(96 * 1024 * 1024));
  });

  it('reopens the log after the kubelet rotated it', async () => {
    const c = await createCtr(pod, 'opts', 'ticker', {
      command: ['sh', '-c', 'while true; do echo tick; sleep 0.1; done'],
    });
    await rpc('StartContainer', { container_id: c });
    const log = join(logDir, 'opts', 'ticker', '0.log');
    await until('a first tick', () => existsSync(log) && readFileSync(log, 'utf8').includes('stdout F tick'));
    renameSync(log, `${log}.1`);
    await rpc('ReopenContainerLog', { container_id: c });
    await until(
      'a tick in the new log',
      () => existsSync(log) && readFileSync(log, 'utf8').includes('stdout F tick'),
    );
  });

  it('reports container and pod stats', async () => {
    const ctrs = (
      await rpc<{ containers: { id: string; metadata: { name: string } }[] }>('ListContainers', {
        filter: { pod_sandbox_id: pod, state: { state: 'CONTAINER_RUNNING' } },
      })
    ).containers;
    const ticker = ctrs.find((x) => x.metadata.name === 'ticker')?.id ?? '';
    type Stats = {
      attributes: { id: string };
      cpu: { usage_core_nano_seconds: { value: string }; usage_nano_cores: { value: string } | null };
      memory: { working_set_bytes: { value: string } };
      writable_layer: { fs_id: { mountpoint: string }; used_bytes: { value: string } } | null;
    };
    const first = (await rpc<{ stats: Stats }>('ContainerStats', { container_id: ticker })).stats;
    expect(first.attributes.id).toBe(ticker);
    expect(BigInt(first.cpu.usage_core_nano_seconds.value)).toBeGreaterThan(0n);
    expect(BigInt(first.memory.working_set_bytes.value)).toBeGreaterThan(0n);
    expect(first.writable_layer?.fs_id.mountpoint).toBe(join(s.stateRoot, 'snapshots'));
    const second = await until('a second cpu sample', async () => {
      const st = (await rpc<{ stats: Stats }>('ContainerStats', { container_id: ticker })).stats;
      return st.cpu.usage_nano_cores ? st : undefined;
    });
    expect(BigInt(second.cpu.usage_nano_cores?.value ?? '0')).toBeGreaterThanOrEqual(0n);
    const listed = (await rpc<{ stats: Stats[] }>('ListContainerStats', { filter: { pod_sandbox_id: pod } }))
      .stats;
    expect(listed.map((x) => x.attributes.id).sort()).toEqual(ctrs.map((x) => x.id).sort());
    const podStats = (
      await rpc<{
        stats: {
          attributes: { id: string };
          linux: { process: { process_count: { value: string } }; containers: Stats[] };
        };
      }>('PodSandboxStats', { pod_sandbox_id: pod })
    ).stats;
    expect(podStats.attributes.id).toBe(pod);
    expect(podStats.linux.containers).toHaveLength(ctrs.length);
    expect(Number(podStats.linux.process.process_count.value)).toBeGreaterThan(ctrs.length);
    const pods = (await rpc<{ stats: { attributes: { id: string } }[] }>('ListPodSandboxStats', {})).stats;
    expect(pods.map((x) => x.attributes.id)).toEqual([pod]);
  });
});

describe('CRI container events and streamed lists', () => {
  type Ev = {
    container_id: string;
    container_event_type: string;
    created_at: string;
    pod_sandbox_status: { id: string } | null;
    containers_statuses: { id: string; state: string }[];
  };

  it('streams pod and container events until the client cancels', async () => {
    const open = (s.client.runtime as unknown as Record<string, (r: unknown) => ClientReadableStream<Ev>>)
      .GetContainerEvents;
    const stream = open?.call(s.client.runtime, {});
    if (!stream) throw new Error('no GetContainerEvents');
    const got: Ev[] = [];
    stream.on('data', (e: Ev) => got.push(e));
    const ended = new Promise<number>((r) => stream.on('status', (st: { code: number }) => r(st.code)));
    stream.on('error', () => undefined);
    const pod = await runPod('events');
    const c = await createCtr(pod, 'events', 'a');
    await rpc('StartContainer', { container_id: c });
    await rpc('StopContainer', { container_id: c, timeout: 0 });
    await rpc('RemoveContainer', { container_id: c });
    const seq = (id: string) => got.filter((e) => e.container_id === id).map((e) => e.container_event_type);
    await until('the container deleted event', () => seq(c).includes('CONTAINER_DELETED_EVENT'));
    expect(seq(c)).toEqual([
      'CONTAINER_CREATED_EVENT',
      'CONTAINER_STARTED_EVENT',
      'CONTAINER_STOPPED_EVENT',
      'CONTAINER_DELETED_EVENT',
    ]);
    expect(seq(pod).slice(0, 2)).toEqual(['CONTAINER_CREATED_EVENT', 'CONTAINER_STARTED_EVENT']);
    const started = got.find(
      (e) => e.container_id === c && e.container_event_type === 'CONTAINER_STARTED_EVENT',
    );
    expect(started?.pod_sandbox_status?.id).toBe(pod);
    expect(started?.containers_statuses.map((x) => x.id)).toEqual([c]);
    expect(BigInt(started?.created_at ?? '0')).toBeGreaterThan(0n);
    stream.cancel();
    expect(await ended).toBe(1);
    await rpc('RemovePodSandbox', { pod_sandbox_id: pod });
  });

  it('streams pods and containers as their List RPCs answer them', async () => {
    const pod = await runPod('streamed');
    const c = await createCtr(pod, 'streamed', 'a');
    const pods = await s.client.stream<{ pod_sandboxes: { id: string }[] }>(
      s.client.runtime,
      'StreamPodSandboxes',
      {
        filter: { id: pod },
      },
    );
    expect(pods.status.code).toBe(0);
    expect(pods.messages.flatMap((m) => m.pod_sandboxes.map((p) => p.id))).toEqual([pod]);
    const ctrs = await s.client.stream<{ containers: { id: string }[] }>(
      s.client.runtime,
      'StreamContainers',
      {
        filter: { pod_sandbox_id: pod },
      },
    );
    expect(ctrs.messages.flatMap((m) => m.containers.map((x) => x.id))).toEqual([c]);
    const none = await s.client.stream(s.client.runtime, 'StreamContainerStats', {
      filter: { pod_sandbox_id: pod },
    });
    expect(none).toEqual({ messages: [], status: expect.objectContaining({ code: 0 }) });
    await rpc('RemovePodSandbox', { pod_sandbox_id: pod });
  });
});

describe('CRI pod network leftovers', () => {
  it('tears down the pod networks no pod owns and keeps the others', async () => {
    const pod = await runPod('owner');
    const network = new LoopbackNetwork(join(s.runRoot, 'netns'));
    await network.setup('0123456789abcdef');
    const owned = (await network.list()).filter((k) => k !== '0123456789abcdef');
    expect(owned).toHaveLength(1);
    const tasks = natsTaskPort(s.nc, s.node);
    const pods = new PodRuntime({
      tasks,
      network,
      sandboxImage: {} as never,
      containersDir: join(s.stateRoot, 'containers'),
      log: createLogger({ service: 'cri-gateway', node: s.node, level: 'silent' }),
    });
    expect(await pods.collectNetworks()).toEqual(['0123456789abcdef']);
    expect(await network.list()).toEqual(owned);
    expect(readFileSync('/proc/self/mountinfo', 'utf8')).not.toContain('0123456789abcdef');
    await rpc('RemovePodSandbox', { pod_sandbox_id: pod });
    expect(await network.list()).toEqual([]);
  });
});

describe('CRI with a gRPC C-core client (Python grpcio)', () => {
  it('runs a pod and a container as a non-JavaScript client sees it', async () => {
    // Debian's protoc (3.21) predates the debug_redact field option; it does not change the wire.
    const proto = readFileSync(join(import.meta.dirname, '..', 'proto', 'api.proto'), 'utf8');
    writeFileSync(join(s.root, 'api.proto'), proto.replace(/\s*\[debug_redact = true\]/g, ''));
    const pb = join(s.root, 'cri.pb');
    execFileSync('protoc', [
      '--include_imports',
      `--descriptor_set_out=${pb}`,
      `-I${s.root}`,
      join(s.root, 'api.proto'),
    ]);
    const calls = [
      { service: 'RuntimeService', method: 'Version', request: {} },
      { service: 'RuntimeService', method: 'RunPodSandbox', request: { config: podConfig('py') } },
      {
        service: 'RuntimeService',
        method: 'CreateContainer',
        request: {
          pod_sandbox_id: '$1.pod_sandbox_id',
          config: ctrConfig('a'),
          sandbox_config: podConfig('py'),
        },
      },
      { service: 'RuntimeService', method: 'StartContainer', request: { container_id: '$2.container_id' } },
      {
        service: 'RuntimeService',
        method: 'ExecSync',
        request: { container_id: '$2.container_id', cmd: ['sh', '-c', 'echo py; exit 4'], timeout: 10 },
      },
      { service: 'RuntimeService', method: 'ContainerStatus', request: { container_id: '$2.container_id' } },
      {
        service: 'RuntimeService',
        method: 'ListPodSandbox',
        request: { filter: { label_selector: { app: 'py' } } },
      },
      {
        service: 'RuntimeService',
        method: 'StopPodSandbox',
        request: { pod_sandbox_id: '$1.pod_sandbox_id' },
      },
      {
        service: 'RuntimeService',
        method: 'RemovePodSandbox',
        request: { pod_sandbox_id: '$1.pod_sandbox_id' },
      },
      {
        service: 'RuntimeService',
        method: 'PodSandboxStatus',
        request: { pod_sandbox_id: '$1.pod_sandbox_id' },
      },
    ];
    // Asynchronously: the gateway answers from this very process.
    const py = spawn('/usr/bin/python3', [
      join(import.meta.dirname, 'testdata', 'cri-py-client.py'),
      s.gateway.socket,
      pb,
    ]);
    let out = '';
    let err = '';
    py.stdout.on('data', (b: Buffer) => {
      out += b.toString();
    });
    py.stderr.on('data', (b: Buffer) => {
      err += b.toString();
    });
    py.stdin.end(JSON.stringify(calls));
    const [code] = (await once(py, 'exit')) as [number];
    expect(code, err).toBe(0);
    type R = { code: number; details: string; response: Record<string, unknown> };
    const r = JSON.parse(out) as R[];
    expect(r.slice(0, 9).map((x) => [x.code, x.details])).toEqual(new Array(9).fill([0, '']));
    expect(r[0]?.response).toMatchObject({ runtime_name: 'berth', runtime_api_version: 'v1' });
    const pod = r[1]?.response.pod_sandbox_id as string;
    expect(pod).toMatch(/^[a-f0-9]{64}$/);
    expect(Buffer.from(r[4]?.response.stdout as string, 'base64').toString()).toBe('py\n');
    expect(r[4]?.response.exit_code).toBe(4);
    expect(r[5]?.response.status).toMatchObject({
      id: r[2]?.response.container_id,
      state: 'CONTAINER_RUNNING',
      metadata: { name: 'a' },
      labels: { ctr: 'a' },
    });
    expect((r[6]?.response.items as { id: string }[] | undefined)?.map((i) => i.id)).toEqual([pod]);
    expect(r[9]).toMatchObject({ code: NOT_FOUND, details: `pod sandbox "${pod}" not found` });
  });
});

describe('CRI bad input', () => {
  it('answers NOT_FOUND for unknown pods and containers', async () => {
    const unknown = 'f'.repeat(64);
    for (const [method, req] of [
      ['PodSandboxStatus', { pod_sandbox_id: unknown }],
      ['StopPodSandbox', { pod_sandbox_id: unknown }],
      ['ContainerStatus', { container_id: unknown }],
      ['StartContainer', { container_id: unknown }],
      ['StopContainer', { container_id: unknown }],
      ['ExecSync', { container_id: unknown, cmd: ['true'] }],
    ] as const) {
      const err = await grpcError(rpc(method, req));
      expect(err.code, method).toBe(NOT_FOUND);
      expect(err.details, method).toContain(unknown);
    }
    await rpc('RemovePodSandbox', { pod_sandbox_id: unknown });
    await rpc('RemoveContainer', { container_id: unknown });
    const err = await grpcError(createCtr(unknown, 'x', 'a'));
    expect(err.code).toBe(NOT_FOUND);
    expect(err.details).toBe(`pod sandbox "${unknown}" not found`);
  });

  it('refuses malformed configs with INVALID_ARGUMENT naming the field, leaving nothing behind', async () => {
    const pod = await runPod('strict');
    const before = await berthContainers();
    const runcBefore = runcIds(s.stateRoot);
    const cases: [string, Json, string][] = [
      ['RunPodSandbox', { config: { hostname: 'x' } }, 'config.metadata is required'],
      ['RunPodSandbox', { config: podConfig('bad', { hostname: 'a\nb' }) }, 'config.hostname'],
      ['RunPodSandbox', { config: podConfig('bad', { log_directory: 'rel/dir' }) }, 'config.log_directory'],
      [
        'CreateContainer',
        { pod_sandbox_id: pod, config: ctrConfig('a', { log_path: '../../escape.log' }) },
        'config.log_path',
      ],
      [
        'CreateContainer',
        { pod_sandbox_id: pod, config: ctrConfig('a', { image: { image: '' } }) },
        'config.image.image',
      ],
      [
        'CreateContainer',
        {
          pod_sandbox_id: pod,
          config: ctrConfig('a', { mounts: [{ container_path: '/data', host_path: 'rel' }] }),
        },
        'config.mounts[0].host_path',
      ],
      [
        'CreateContainer',
        { pod_sandbox_id: pod, config: ctrConfig('a', { envs: [{ key: 'A=B', value: Buffer.from('1') }] }) },
        'config.envs[0].key',
      ],
      ['ExecSync', { container_id: 'x', cmd: [] }, 'cmd is required'],
    ];
    for (const [method, req, field] of cases) {
      const err = await grpcError(rpc(method, req));
      expect(err.code, `${field}: ${err.details}`).toBe(INVALID_ARGUMENT);
      expect(err.details, field).toContain(field);
    }
    const missing = await grpcError(
      rpc('CreateContainer', { pod_sandbox_id: pod, config: ctrConfig('a', { image: { image: 'nope:1' } }) }),
    );
    expect(missing.code).toBe(NOT_FOUND);
    expect(missing.details).toContain('"nope:1"');
    expect(await berthContainers()).toEqual(before);
    expect(runcIds(s.stateRoot)).toEqual(runcBefore);
    expect((await rpc<{ items: Json[] }>('ListPodSandbox', {})).items.map((i) => i.id)).toEqual([pod]);
    await rpc('RemovePodSandbox', { pod_sandbox_id: pod });
  });

  it('refuses a second pod with the same metadata with ALREADY_EXISTS and frees its network', async () => {
    const pod = await runPod('twice');
    const err = await grpcError(runPod('twice'));
    expect(err.code).toBe(ALREADY_EXISTS);
    expect(err.details).toContain('default/twice');
    expect(readdirSync(join(s.runRoot, 'netns'))).toHaveLength(1);
    await rpc('RemovePodSandbox', { pod_sandbox_id: pod });
    expect(readdirSync(join(s.runRoot, 'netns'))).toEqual([]);
  });
});
