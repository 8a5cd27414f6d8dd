import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { hostname as osHostname } from 'node:os';
import { join } from 'node:path';
import { CONTAINER_RECORD_MAX_BYTES } from '@berth/api';
import { createLogger, podNetnsDir } from '@berth/kit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAX_MESSAGE_BYTES } from './grpc/grpc-wire.js';
import { CniPodNetwork } from './runtime/cni-network.js';
import { ContainerRuntime, EXEC_SYNC_MAX_STREAM_BYTES } from './runtime/containers.js';
import { natsShimNetworkPort, natsShimPort, natsTaskPort } from './runtime/nats-ports.js';
import { PodRuntime } from './runtime/pods.js';
import { criClient } from './testdata/cri-client.js';
import {
  ALREADY_EXISTS,
  BUSYBOX,
  berthContainers,
  createCtr,
  ctrConfig,
  ctrStatus,
  DEADLINE_EXCEEDED,
  exec,
  FAILED_PRECONDITION,
  grpcError,
  INVALID_ARGUMENT,
  type Json,
  NOT_FOUND,
  podConfig,
  rpc,
  runPod,
  SANDBOX_IMAGE,
  startPodStack,
  until,
} from './testdata/pod-fixtures.js';
import { type RuntimeStack, runcIds } from './testdata/runtime-stack.js';

const RESOURCE_EXHAUSTED = 8;

// CRI pods and containers end to end: a grpc-js client on the gateway's socket, the real
// image-, snapshot- and task-services and shim (runc under conmon), NATS and Redis: the
// lifecycle, leftovers and bad input.

let s: RuntimeStack;
let logDir: string;

beforeAll(async () => {
  ({ s, logDir } = await startPodStack());
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
    const mounts = [
      { container_path: '/data', host_path: join(logDir, 'web-data') },
      {
        container_path: '/config',
        host_path: join(logDir, 'web-config'),
        readonly: true,
        propagation: 'PROPAGATION_PRIVATE',
      },
    ];
    ctr = await createCtr(pod, 'web', 'app', {
      envs: [{ key: 'GREETING', value: Buffer.from('hello world') }],
      mounts,
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
    // Its mounts as the request gave them (containerd reports the config's), unset ones at defaults.
    expect(st.mounts).toMatchObject(
      mounts.map((m) => ({ readonly: false, propagation: 'PROPAGATION_PRIVATE', ...m })),
    );
    // As containerd: image_ref the digested reference, image_id the image's id (PullImage's).
    expect(st.image_ref).toMatch(/^localhost\/busybox@sha256:[a-f0-9]{64}$/);
    expect(st.image_id).toMatch(/^sha256:[a-f0-9]{64}$/);
    expect(BigInt(st.started_at as string)).toBeGreaterThan(0n);
    const log = await until('the CRI log line', () => {
      const f = join(logDir, 'web', 'app', '0.log');
      return existsSync(f) && readFileSync(f, 'utf8').includes(' stdout F hi\n') && readFileSync(f, 'utf8');
    });
    expect(log).toMatch(/^\d{4}-\d\d-\d\dT\S+ stdout F hi\n$/);
    // Verbose, with the keys of containerd's that operators read (`{{.info.pid}}` for nsenter).
    const verbose = await rpc<{ info: { info: string } }>('ContainerStatus', {
      container_id: ctr,
      verbose: true,
    });
    const rec = JSON.parse(verbose.info.info) as Json & { task: { pid: number }; container: Json };
    expect(rec).toMatchObject({ sandboxID: pod, pid: rec.task.pid });
    expect(rec.pid).toBeGreaterThan(0);
    expect(existsSync(`/proc/${rec.pid}`)).toBe(true);
    expect((rec.runtimeSpec as { process: { args: string[] } }).process.args).toEqual([
      'sh',
      '-c',
      'echo hi; exec sleep 1000',
    ]);
    expect(rec.container.spec).toBeUndefined();
    const podVerbose = await rpc<{ info: { info: string } }>('PodSandboxStatus', {
      pod_sandbox_id: pod,
      verbose: true,
    });
    const podRec = JSON.parse(podVerbose.info.info) as Json & { task: { pid: number } };
    expect(podRec.pid).toBe(podRec.task.pid);
    expect(podRec.pid).toBeGreaterThan(0);
    const listed = await rpc<{ containers: Json[] }>('ListContainers', { filter: { pod_sandbox_id: pod } });
    expect(listed.containers.map((c) => c.id)).toEqual([ctr]);
    const podSt = await rpc<{ containers_statuses: Json[]; timestamp: string }>('PodSandboxStatus', {
      pod_sandbox_id: pod,
    });
    expect(podSt.containers_statuses.map((c) => [c.id, c.state])).toEqual([[ctr, 'CONTAINER_RUNNING']]);
    expect(BigInt(podSt.timestamp)).toBeGreaterThan(0n);
  });

  it('makes a missing host path of a mount a directory, as containerd does', async () => {
    const host = join(logDir, 'hostpath-missing', 'sub');
    expect(existsSync(host)).toBe(false);
    const c = await createCtr(pod, 'web', 'hostpath', {
      mounts: [{ container_path: '/m', host_path: host }],
      command: ['sh', '-c', 'echo written > /m/f; exec sleep 1000'],
    });
    expect(statSync(host).isDirectory()).toBe(true);
    expect(statSync(host).mode & 0o777).toBe(0o755);
    await rpc('StartContainer', { container_id: c });
    await until('the file written through the mount', () => existsSync(join(host, 'f')));
    expect(readFileSync(join(host, 'f'), 'utf8')).toBe('written\n');
    await rpc('RemoveContainer', { container_id: c });
  });

  it('a container made from the image id, as the kubelet makes it, reports the tag and the name the user gave', async () => {
    const image = await s.client.unary<{ image: { id: string } | null }>(s.client.image, 'ImageStatus', {
      image: { image: BUSYBOX },
    });
    const id = image.image?.id as string;
    const byId = await createCtr(pod, 'web', 'by-id', {
      image: { image: id, user_specified_image: 'busybox-as-the-pod-spec-says' },
    });
    const st = await ctrStatus(byId);
    expect(st.image).toEqual({
      image: BUSYBOX,
      annotations: {},
      user_specified_image: 'busybox-as-the-pod-spec-says',
      runtime_handler: '',
      image_ref: '',
    });
    expect(st.image_id).toBe(id);
    expect(st.image_ref).toMatch(/^localhost\/busybox@sha256:[a-f0-9]{64}$/);
    // Listed, it is named by the image's id, as containerd lists it: the kubelet's image garbage
    // collector takes a listed container's image_ref as an id of ListImages for an image in use.
    const listed = await rpc<{ containers: Json[] }>('ListContainers', { filter: { id: byId } });
    expect(listed.containers[0]).toMatchObject({ image: { image: id }, image_ref: id, image_id: id });
    const images = await s.client.unary<{ images: { id: string }[] }>(s.client.image, 'ListImages', {});
    expect(images.images.map((i) => i.id)).toContain(listed.containers[0]?.image_ref);
    await rpc('RemoveContainer', { container_id: byId });
  });

  it('ExecSync answers output and exit code, inside the pod', async () => {
    const r = await exec(ctr, ['sh', '-c', 'echo $GREETING; echo err >&2; exit 3']);
    expect(Buffer.from(r.stdout).toString()).toBe('hello world\n');
    expect(Buffer.from(r.stderr).toString()).toBe('err\n');
    expect(r.exit_code).toBe(3);
    expect(Buffer.from((await exec(ctr, ['hostname'])).stdout).toString()).toBe('web\n');
    // HOSTNAME in its environment, as containerd's CRI sets it.
    expect(Buffer.from((await exec(ctr, ['sh', '-c', 'echo $HOSTNAME'])).stdout).toString()).toBe('web\n');
    const resolv = Buffer.from((await exec(ctr, ['cat', '/etc/resolv.conf'])).stdout).toString();
    expect(resolv).toContain('nameserver 10.0.0.10');
    expect(resolv).toContain('search svc.cluster.local');
    // Past NATS's 1 MB max_payload: the gateway reads the exec's log on its node.
    const big = await exec(ctr, ['sh', '-c', 'head -c 3000000 /dev/zero | tr "\\0" a; echo']);
    expect(big.exit_code).toBe(0);
    expect(Buffer.from(big.stdout).toString()).toBe(`${'a'.repeat(3_000_000)}\n`);
    const err = await grpcError(exec(ctr, ['sleep', '30'], 1));
    expect(err.code).toBe(DEADLINE_EXCEEDED);
    // Killed before the answer, as containerd kills the exec and waits for it: no sleep 30 left.
    const ps = Buffer.from((await exec(ctr, ['ps', '-o', 'pid,args'])).stdout).toString();
    expect(ps).toMatch(/\bps -o pid,args\n/);
    expect(ps).not.toContain('sleep 30');
  });

  it("gives a pod with no host name the node's, as containerd, and its containers too, in HOSTNAME", async () => {
    const nameless = await runPod('nameless', { hostname: '' });
    try {
      const c = await createCtr(nameless, 'nameless', 'app');
      await rpc('StartContainer', { container_id: c });
      const out = Buffer.from((await exec(c, ['sh', '-c', 'echo "$HOSTNAME"; hostname'])).stdout).toString();
      const [env, actual] = out.trim().split('\n');
      expect(actual).toBe(osHostname());
      expect(env).toBe(actual);
    } finally {
      await rpc('StopPodSandbox', { pod_sandbox_id: nameless });
      await rpc('RemovePodSandbox', { pod_sandbox_id: nameless });
    }
  });

  it('ExecSync answers bytes as written: many short lines up to the 16 MiB cap whole, binary intact', async () => {
    // A client that takes 16 MiB messages, as the kubelet's does (grpc-js's default is 4 MiB).
    const kubelet = criClient(s.gateway.socket, {
      channel: { 'grpc.max_receive_message_length': MAX_MESSAGE_BYTES },
      deadlineMs: 120_000,
    });
    const execSync = (cmd: string) =>
      kubelet.unary<{ stdout: Buffer; stderr: Buffer; exit_code: number }>(kubelet.runtime, 'ExecSync', {
        container_id: ctr,
        cmd: ['sh', '-c', cmd],
        timeout: 100,
      });
    try {
      // 15 MiB of 20-byte lines on stdout and 256 KiB of 4-byte lines on stderr: with ~44 bytes of
      // prefix a line, a log file of 50 MB, which a read of twice the cap cut well short.
      const lines = 15 * 1024 * 1024;
      const r = await execSync(
        `yes 0123456789abcdefghi | head -c ${lines}; yes err | head -c ${256 * 1024} >&2`,
      );
      expect(r.exit_code).toBe(0);
      expect(r.stdout.length).toBe(lines);
      expect(r.stdout.equals(Buffer.from('0123456789abcdefghi\n'.repeat(lines / 20)))).toBe(true);
      expect(r.stderr.equals(Buffer.from('err\n'.repeat(64 * 1024)))).toBe(true);
      // Bytes that are not UTF-8, on both streams, in a full line and a partial one.
      const bin = await execSync("printf '\\377\\376\\000\\200\\n\\303('; printf '\\342\\202' >&2");
      expect(bin.stdout.equals(Buffer.from([0xff, 0xfe, 0x00, 0x80, 0x0a, 0xc3, 0x28]))).toBe(true);
      expect(bin.stderr.equals(Buffer.from([0xe2, 0x82]))).toBe(true);
      // Past the cap, as containerd: 16 MiB of stdout is more than one gRPC reply may hold.
      const over = await grpcError(execSync(`head -c ${17 * 1024 * 1024} /dev/zero`));
      expect(over.code).toBe(RESOURCE_EXHAUSTED);
      expect(over.details).toContain('ExecSync reply');
    } finally {
      kubelet.close();
    }
  }, 180_000);

  it('ExecSync cuts each stream at 16 MiB on its own, stderr after an overflowing stdout kept', async () => {
    // The runtime under the gRPC layer, where a cut reply is seen before the message limit.
    const tasks = natsTaskPort(s.nc, s.node);
    const deps = {
      tasks,
      shim: natsShimPort(s.nc, s.node),
      images: {} as never,
      network: {} as never,
      sandboxImage: {} as never,
      containersDir: join(s.stateRoot, 'containers'),
      log: createLogger({ service: 'cri-gateway', node: s.node, level: 'silent' }),
    };
    const containers = new ContainerRuntime(deps, new PodRuntime(deps));
    const mib = 1024 * 1024;
    // 64-byte lines: 17 MiB on stdout, then 16 MiB and a line more on stderr.
    const line = `${'0123456789abcdef'.repeat(4).slice(0, 63)}\n`;
    const r = await containers.execSync(
      ctr,
      [
        'sh',
        '-c',
        `yes ${line.trim()} | head -c ${17 * mib}; echo tail-of-err >&2; yes ${line.trim()} | head -c ${16 * mib} >&2`,
      ],
      100,
    );
    expect(r.exit_code).toBe(0);
    expect(EXEC_SYNC_MAX_STREAM_BYTES).toBe(16 * mib);
    expect(r.stdout.length).toBe(16 * mib);
    expect(r.stdout.equals(Buffer.from(line.repeat((16 * mib) / 64)))).toBe(true);
    // Cut mid-line, 12 bytes into its last one.
    const err = Buffer.from(`tail-of-err\n${line.repeat((16 * mib) / 64)}`).subarray(0, 16 * mib);
    expect(r.stderr.length).toBe(16 * mib);
    expect(r.stderr.equals(err)).toBe(true);
  }, 180_000);

  it('refuses a second container of the same name and attempt, leaving nothing behind', async () => {
    const before = await berthContainers();
    // A host path the refused request names is not made either (containerd reserves the name first).
    const host = join(logDir, 'hostpath-of-a-duplicate');
    const err = await grpcError(
      createCtr(pod, 'web', 'app', { mounts: [{ container_path: '/m', host_path: host }] }),
    );
    expect(err.code).toBe(ALREADY_EXISTS);
    expect(err.details).toContain('"app"');
    expect(await berthContainers()).toEqual(before);
    expect(existsSync(host)).toBe(false);
  });

  it('refuses the second of two concurrent creates of one name before it makes its host path', async () => {
    const before = await berthContainers();
    const hosts = [join(logDir, 'hostpath-of-racer-1'), join(logDir, 'hostpath-of-racer-2')];
    const outcomes = await Promise.allSettled(
      hosts.map((host) =>
        createCtr(pod, 'web', 'racer', { mounts: [{ container_path: '/m', host_path: host }] }),
      ),
    );
    const won = outcomes.flatMap((o, i) =>
      o.status === 'fulfilled' ? [{ id: o.value, host: hosts[i] }] : [],
    );
    const lost = outcomes.flatMap((o, i) =>
      o.status === 'rejected' ? [{ err: o.reason, host: hosts[i] }] : [],
    );
    expect(won).toHaveLength(1);
    expect(lost).toHaveLength(1);
    expect((lost[0]?.err as { code?: number } | undefined)?.code).toBe(ALREADY_EXISTS);
    expect(existsSync(won[0]?.host ?? '')).toBe(true);
    // The refused one made nothing on the host.
    expect(existsSync(lost[0]?.host ?? '')).toBe(false);
    await rpc('RemoveContainer', { container_id: won[0]?.id });
    expect(await berthContainers()).toEqual(before);
  });

  it('refuses a missing host path that cannot be made, making no container', async () => {
    const before = await berthContainers();
    // Under a regular file: mkdir fails with ENOTDIR.
    const host = join(logDir, 'hostpath-file');
    writeFileSync(host, 'x');
    const err = await grpcError(
      createCtr(pod, 'web', 'bad-host-path', {
        mounts: [{ container_path: '/m', host_path: join(host, 'sub') }],
      }),
    );
    expect(err.code).toBe(FAILED_PRECONDITION);
    expect(err.details).toContain('config.mounts[0].host_path');
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

  it('stops and removes the pod, each twice, leaving no container, netns or (soon) runc state', async () => {
    const second = await createCtr(pod, 'web', 'second');
    await rpc('StartContainer', { container_id: second });
    const unstarted = await createCtr(pod, 'web', 'unstarted');
    await rpc('StopPodSandbox', { pod_sandbox_id: pod });
    // Its spec names the pause's namespaces by pid: a stopped pod's are never joined.
    const refused = await grpcError(rpc('StartContainer', { container_id: unstarted }));
    expect(refused.code).toBe(9); // FAILED_PRECONDITION
    expect(refused.details).toBe(
      `pod sandbox ${pod} is not ready: cannot start container ${unstarted} in it`,
    );
    expect((await ctrStatus(unstarted)).state).toBe('CONTAINER_CREATED');
    expect((await ctrStatus(second)).state).toBe('CONTAINER_EXITED');
    const st = await rpc<{ status: Json }>('PodSandboxStatus', { pod_sandbox_id: pod });
    expect(st.status.state).toBe('SANDBOX_NOTREADY');
    // Its address went back with its network, as containerd reports a pod whose netns is closed.
    expect(st.status.network).toEqual({ ip: '', additional_ips: [] });
    const late = await grpcError(createCtr(pod, 'web', 'late'));
    expect(late.code).toBe(9); // FAILED_PRECONDITION
    expect(late.details).toBe(`pod sandbox ${pod} is not ready: cannot create containers in it`);
    await rpc('StopPodSandbox', { pod_sandbox_id: pod });
    await rpc('RemovePodSandbox', { pod_sandbox_id: pod });
    await rpc('RemovePodSandbox', { pod_sandbox_id: pod });
    expect((await grpcError(rpc('PodSandboxStatus', { pod_sandbox_id: pod }))).code).toBe(NOT_FOUND);
    expect(await berthContainers()).toEqual([]);
    // The records went in the call; the tasks are deleted by the task-service's collection after.
    await until('the removed tasks to be deleted', () => runcIds(s.stateRoot).length === 0);
    const netns = join(s.runRoot, 'netns');
    expect(existsSync(netns) ? readdirSync(netns) : []).toEqual([]);
  });
});

describe('CRI pod network leftovers', () => {
  const orphanPod = { namespace: 'default', name: 'orphan', uid: 'orphan-uid', sandboxId: 'f'.repeat(64) };

  it("tears down the CRI pod networks no pod owns, from the shim's records, and keeps the others", async () => {
    const pod = await runPod('owner');
    const shim = natsShimNetworkPort(s.nc, s.node);
    const network = new CniPodNetwork(shim, podNetnsDir(s.runRoot));
    const orphan = 'cri-0123456789abcdef';
    // A `berth run` container's network on the same shim: not the gateway's to collect.
    const other = '0123456789abcdef'.repeat(4);
    await network.setup(orphan, { portMappings: [], pod: orphanPod });
    await shim.setup(other, { portMappings: [] });
    const owned = (await network.list()).filter((k) => k !== orphan);
    expect(owned).toHaveLength(1);
    const tasks = natsTaskPort(s.nc, s.node);
    const pods = new PodRuntime({
      tasks,
      network,
      sandboxImage: {} as never,
      containersDir: join(s.stateRoot, 'containers'),
      log: createLogger({ service: 'cri-gateway', node: s.node, level: 'silent' }),
    });
    expect(await pods.collectNetworks()).toEqual([orphan]);
    expect(await network.list()).toEqual(owned);
    expect((await shim.list()).pods.map((p) => p.podId)).toContain(other);
    expect(readFileSync('/proc/self/mountinfo', 'utf8')).not.toContain(orphan);
    await shim.teardown(other);
    await rpc('RemovePodSandbox', { pod_sandbox_id: pod });
    expect((await shim.list()).pods).toEqual([]);
  });

  it('a running gateway collects them again and again, not only when it starts', async () => {
    await s.restartGateway({ networkCollectMs: 100 });
    try {
      const pod = await runPod('keeper');
      const network = new CniPodNetwork(natsShimNetworkPort(s.nc, s.node), podNetnsDir(s.runRoot));
      // As a RunPodSandbox whose undoing failed while NATS was down leaves it, after the start.
      const orphan = 'cri-fedcba9876543210';
      await network.setup(orphan, { portMappings: [], pod: orphanPod });
      await until('the orphan network to be torn down', async () => !(await network.list()).includes(orphan));
      expect((await rpc<{ status: Json }>('PodSandboxStatus', { pod_sandbox_id: pod })).status.state).toBe(
        'SANDBOX_READY',
      );
      await rpc('StopPodSandbox', { pod_sandbox_id: pod });
      await rpc('RemovePodSandbox', { pod_sandbox_id: pod });
      expect(await network.list()).toEqual([]);
    } finally {
      await s.restartGateway();
    }
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
      ['UpdateContainerResources', { container_id: unknown, linux: { cpu_shares: 512 } }],
      ['ReopenContainerLog', { container_id: unknown }],
      ['ContainerStats', { container_id: unknown }],
      ['PodSandboxStats', { pod_sandbox_id: unknown }],
      ['PortForward', { pod_sandbox_id: unknown, port: [80] }],
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
      [
        // The record the task-service keeps must fit its replies: refused there, reached through CRI.
        'CreateContainer',
        {
          pod_sandbox_id: pod,
          config: ctrConfig('a', { command: Array.from({ length: 100_000 }, () => 'x') }),
        },
        `over the limit of ${CONTAINER_RECORD_MAX_BYTES} bytes`,
      ],
      ['ExecSync', { container_id: 'x', cmd: [] }, 'cmd is required'],
    ];
    for (const [method, req, field] of cases) {
      const err = await grpcError(rpc(method, req));
      expect(err.code, `${field}: ${err.details}`).toBe(INVALID_ARGUMENT);
      expect(err.details, field).toContain(field);
    }
    // A kubelet with the systemd cgroup driver (kubeadm's default) sends a slice: say how to fix it.
    const slice = 'kubepods-burstable-pod0c8f2d1e.slice';
    const systemd = await grpcError(
      rpc('RunPodSandbox', {
        config: podConfig('systemd', { linux: { cgroup_parent: slice } }),
      }),
    );
    expect(systemd.code).toBe(INVALID_ARGUMENT);
    expect(systemd.details).toContain(`config.linux.cgroup_parent "${slice}"`);
    expect(systemd.details).toContain('berth uses the cgroupfs cgroup driver');
    expect(systemd.details).toContain('`cgroupDriver: cgroupfs`');
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
