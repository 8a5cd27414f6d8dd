// `berth up --cohosted`: every service of the node in one process, seen from outside exactly as
// the separate processes are (same subjects, same CLI, same CRI socket). A subset of the e2e
// suite runs here: up, status, pull, run (attached and detached), exec, stop, rm, CRI calls
// (Version, PullImage and ListImages over the socket; with crictl too when BERTH_CRICTL is set), a
// CRI pod on the host's network and its container (the services calling each other in process,
// kit local-route.ts), each service's own log file and login, a crash restarting the process as a
// whole, and down.
// Left out in this mode (covered by the separate-process suite only): CRI pod networking
// (cri-*.test.ts, network.test.ts), seccomp, recovery of half-made containers, the SDK, tracing
// and the ACL matrix (stack-acl.test.ts), replicas (refused in co-hosted mode, tested below).
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadCriDefinition } from '@berth/cri-gateway';
import { hostLayout } from '@berth/kit';
import { parsePrometheusText } from '@berth/kit/metrics-text';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runBerth } from '../harness/berth.js';
import { alive, type Stack, waitFor } from '../harness/stack.js';
import { startUpFixture, type UpFixture } from './up-fixture.js';

const SERVICES = ['shim', 'snapshot-service', 'image-service', 'task-service', 'cri-gateway'];

let f: UpFixture;
let stack: Stack;
let image: string;

beforeAll(async () => {
  f = await startUpFixture({ nodes: [{ upArgs: ['--cohosted'] }] });
  [stack] = f.stacks as [Stack];
  image = f.image;
}, 120_000);

afterAll(() => f?.stop(), 60_000);

/** The one co-hosted process of the stack, from the supervisor's state file. */
function cohostedChild() {
  const children = stack.state()?.children.filter((c) => c.kind === 'service') ?? [];
  expect(children.map((c) => c.name)).toEqual(['cohosted']);
  return children[0] as (typeof children)[number] & { services?: string[] };
}

/** One unary CRI call over the gateway's socket with grpc-js. */
function criCall<T>(service: 'RuntimeService' | 'ImageService', rpc: string, req: unknown): Promise<T> {
  const pkg = grpc.loadPackageDefinition(loadCriDefinition()) as unknown as {
    runtime: { v1: Record<string, grpc.ServiceClientConstructor> };
  };
  const Ctor = pkg.runtime.v1[service] as grpc.ServiceClientConstructor;
  const client = new Ctor(`unix:${hostLayout(stack).run.criSocket}`, grpc.credentials.createInsecure());
  type Rpc = (r: unknown, o: grpc.CallOptions, cb: (e: Error | null, v?: unknown) => void) => void;
  return new Promise<T>((resolve, reject) =>
    (client[rpc] as Rpc).call(client, req, { deadline: Date.now() + 30_000 }, (err, reply) => {
      client.close();
      if (err) reject(err);
      else resolve(reply as T);
    }),
  );
}

describe('berth up --cohosted', () => {
  it('runs every service in one process, each registered and healthy under the same pid', async () => {
    const child = cohostedChild();
    expect(child.services).toEqual(SERVICES);
    const { code, json } = await stack.status();
    expect(code).toBe(0);
    for (const name of SERVICES) {
      const svc = json.services.find((s) => s.service === name);
      expect(
        svc?.instances.map((i) => [i.pid, i.health]),
        name,
      ).toEqual([[child.pid, 'healthy']]);
    }
  });

  it('gives each service its own log file and its own NATS and Redis login', () => {
    const logs = hostLayout(stack).serviceLogs;
    for (const name of SERVICES) {
      const lines = readFileSync(join(logs, `${name}.log`), 'utf8')
        .trim()
        .split('\n');
      const ready = lines.map((l) => JSON.parse(l)).find((l) => l.msg === `${name} ready`);
      expect(ready?.service, name).toBe(name);
    }
    // What the supervisor handed the process: one login per service, as separate processes get.
    const pid = cohostedChild().pid as number;
    const env = readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0');
    const raw = env
      .find((kv) => kv.startsWith('BERTH_COHOSTED_LOGINS='))
      ?.slice('BERTH_COHOSTED_LOGINS='.length);
    const logins = JSON.parse(raw ?? '{}') as Record<string, { natsUrl: string; redisUrl: string }>;
    expect(Object.keys(logins).sort()).toEqual([...SERVICES].sort());
    for (const name of SERVICES) {
      expect(new URL(logins[name]?.natsUrl ?? '').username, name).toBe(`${name}.${stack.nodeId}`);
      expect(new URL(logins[name]?.redisUrl ?? '').username, name).toBe(`${name}.${stack.nodeId}`);
    }
    expect(env.some((kv) => kv.startsWith('BERTH_NATS_URL='))).toBe(false);
    // Fewer glibc arenas and a fixed mmap threshold: freed memory does not stay resident.
    expect(env).toContain('MALLOC_ARENA_MAX=2');
    expect(env).toContain('MALLOC_MMAP_THRESHOLD_=131072');
  });

  it('pulls, runs, execs, stops and removes containers', async () => {
    const pull = await stack.berth('pull', image);
    expect(pull.code, pull.stderr).toBe(0);
    const once = await stack.berth('run', '--rm', image, 'sh', '-c', 'echo hello; exit 3');
    expect(once.stdout).toContain('hello');
    expect(once.code).toBe(3);
    const run = await stack.berth('run', '-d', '--name', 'co', image, 'sleep', '300');
    expect(run.code, run.stderr).toBe(0);
    const ex = await stack.berth('exec', 'co', 'sh', '-c', 'echo inside; exit 4');
    expect(ex.stdout).toContain('inside');
    expect(ex.code).toBe(4);
    const stop = await stack.berth('stop', '-t', '1', 'co');
    expect(stop.code, stop.stderr).toBe(0);
    const rm = await stack.berth('rm', 'co');
    expect(rm.code, rm.stderr).toBe(0);
    const ps = await stack.berth('ps', '-aq');
    expect(ps.stdout.trim()).toBe('');
    // Each service used only what its own role allows: the server refused nothing.
    const natsLog = readFileSync(join(hostLayout(stack).serviceLogs, 'nats-server.log'), 'utf8');
    expect(natsLog.split('\n').filter((l) => /Violation/i.test(l))).toEqual([]);
  }, 120_000);

  it('answers CRI calls on the socket', { timeout: 60_000 }, async () => {
    const v = await criCall<{ runtime_name: string }>('RuntimeService', 'Version', { version: 'v1' });
    expect(v.runtime_name).toBe('berth');
    // The CRI's own namespace: through the gateway to the image-service and back.
    const pulled = await criCall<{ image_ref: string }>('ImageService', 'PullImage', { image: { image } });
    expect(pulled.image_ref).toMatch(/^sha256:[0-9a-f]{64}$/);
    const imgs = await criCall<{ images: { repo_tags: string[] }[] }>('ImageService', 'ListImages', {});
    expect(imgs.images.flatMap((i) => i.repo_tags)).toContain(image);
    const crictl = process.env.BERTH_CRICTL;
    if (crictl) {
      const endpoint = `unix://${hostLayout(stack).run.criSocket}`;
      const out = await new Promise<string>((resolve, reject) =>
        execFile(crictl, ['--runtime-endpoint', endpoint, '--image-endpoint', endpoint, 'images'], (e, o) =>
          e ? reject(e) : resolve(o),
        ),
      );
      expect(out).toContain(f.registry.host);
    }
  });

  it('runs a CRI pod and its container, the services answering each other in process', async () => {
    await criCall('ImageService', 'PullImage', { image: { image } });
    const logDir = join(stack.root, 'pod-logs', 'co-pod');
    const podConfig = {
      metadata: { name: 'co-pod', uid: 'uid-co-pod', namespace: 'default', attempt: 0 },
      log_directory: logDir,
      linux: { security_context: { namespace_options: { network: 'NODE' } } },
    };
    const { pod_sandbox_id: pod } = await criCall<{ pod_sandbox_id: string }>(
      'RuntimeService',
      'RunPodSandbox',
      { config: podConfig },
    );
    const { container_id: ctr } = await criCall<{ container_id: string }>(
      'RuntimeService',
      'CreateContainer',
      {
        pod_sandbox_id: pod,
        config: {
          metadata: { name: 'co-ctr', attempt: 0 },
          image: { image },
          command: ['sh', '-c', 'echo started; sleep 300'],
          log_path: 'co-ctr.log',
        },
        sandbox_config: podConfig,
      },
    );
    await criCall('RuntimeService', 'StartContainer', { container_id: ctr });
    const exec = await criCall<{ stdout: Buffer; exit_code: number }>('RuntimeService', 'ExecSync', {
      container_id: ctr,
      cmd: ['sh', '-c', 'echo in-pod; exit 5'],
      timeout: 10,
    });
    expect([exec.stdout.toString(), exec.exit_code]).toEqual(['in-pod\n', 5]);
    const running = await criCall<{ status: { state: string } }>('RuntimeService', 'ContainerStatus', {
      container_id: ctr,
    });
    expect(running.status.state).toBe('CONTAINER_RUNNING');
    await criCall('RuntimeService', 'StopContainer', { container_id: ctr, timeout: 1 });
    const stopped = await criCall<{ status: { state: string; exit_code: number } }>(
      'RuntimeService',
      'ContainerStatus',
      { container_id: ctr },
    );
    expect(stopped.status.state).toBe('CONTAINER_EXITED');
    expect(readFileSync(join(logDir, 'co-ctr.log'), 'utf8')).toMatch(/ stdout F started\n/);
    await criCall('RuntimeService', 'RemoveContainer', { container_id: ctr });
    await criCall('RuntimeService', 'StopPodSandbox', { pod_sandbox_id: pod });
    await criCall('RuntimeService', 'RemovePodSandbox', { pod_sandbox_id: pod });
    const left = await criCall<{ containers: unknown[] }>('RuntimeService', 'ListContainers', {});
    const pods = await criCall<{ items: unknown[] }>('RuntimeService', 'ListPodSandbox', {});
    expect([left.containers, pods.items]).toEqual([[], []]);
    // The gateway's creates (the pod's pause and its container) reached the task-service in
    // process; the CLI's calls (another process, `berth run` above) came over NATS: the access
    // lines say which.
    const served = readFileSync(join(hostLayout(stack).serviceLogs, 'task-service.log'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { msg?: string; op?: string; via?: string })
      .filter((l) => l.msg === 'request');
    expect(served.filter((l) => l.op === 'create').map((l) => l.via)).toEqual(['process', 'process']);
    expect(served.filter((l) => l.op === 'run-container' && l.via === undefined).length).toBeGreaterThan(0);
  }, 120_000);

  it('serves one metrics endpoint for the process, each service under its own label', async () => {
    const pid = cohostedChild().pid;
    const { json } = await stack.status();
    const urls = SERVICES.map((n) => json.services.find((s) => s.service === n)?.instances[0]?.metrics);
    // Every service advertises the process's one endpoint, as `berth status` lists it.
    expect(new Set(urls).size, JSON.stringify(urls)).toBe(1);
    const url = urls[0] as string;
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
    const samples = parsePrometheusText(await (await fetch(url)).text());
    const total = (name: string, labels: Record<string, string>) =>
      samples
        .filter((x) => x.name === name && Object.entries(labels).every(([k, v]) => x.labels[k] === v))
        .reduce((t, x) => t + x.value, 0);
    for (const n of SERVICES) {
      // `berth status` asked each service for `info`, which pings its own Redis connection.
      expect(total('berth_requests_total', { service: n, op: 'info' }), n).toBeGreaterThan(0);
      expect(
        total('berth_redis_command_duration_seconds_count', { service: n, command: 'ping' }),
        n,
      ).toBeGreaterThan(0);
    }
    // What each service did in the earlier tests, under its own name only.
    expect(total('berth_requests_total', { service: 'image-service', op: 'pull' })).toBeGreaterThan(0);
    expect(total('berth_requests_total', { service: 'task-service', op: 'pull' })).toBe(0);
    expect(total('berth_shim_exits_total', { service: 'shim' })).toBeGreaterThanOrEqual(2);
    expect(total('berth_cri_requests_total', { service: 'cri-gateway' })).toBeGreaterThanOrEqual(3);
    // The process's own figures once, under the process's name.
    const cpu = samples.filter((x) => x.name === 'process_cpu_seconds_total');
    expect(cpu.map((x) => x.labels.service)).toEqual(['berth-cohosted']);

    // `berth service top` reads each service's rows from the shared endpoint.
    const top = await stack.berth('service', 'top', '--once', '--json', '--interval', '0.5');
    expect(top.code, top.stderr).toBe(0);
    const rows = (
      JSON.parse(top.stdout) as {
        replicas: { service: string; pid: number; url: string; figures: unknown }[];
      }
    ).replicas;
    expect(rows.map((r) => r.service)).toEqual(SERVICES);
    for (const r of rows) expect(r, r.service).toMatchObject({ pid, url, figures: expect.any(Object) });

    // Its spans are in the span store, each under its own service: `berth trace` shows the
    // services' side of a command as it does for separate processes.
    const traced = await stack.berth('trace', '--op', 'pull', '--json');
    expect(traced.code, traced.stderr).toBe(0);
    const spans = JSON.parse(traced.stdout) as { service: string; name: string; kind: number }[];
    expect(
      spans.some((x) => x.service === 'image-service' && x.name === 'image-service/pull' && x.kind === 1),
    ).toBe(true);
    const serviceOf = (name: string) => spans.find((x) => x.name === name)?.service;
    expect(serviceOf('layer apply')).toBe('snapshot-service');
    expect(serviceOf('EVAL content record')).toBe('image-service');
  }, 60_000);

  it('restarts the process as a whole when it dies', async () => {
    const before = cohostedChild();
    process.kill(before.pid as number, 'SIGKILL');
    const after = await waitFor('the co-hosted process to come back', () => {
      const c = cohostedChild();
      return c.pid !== null && c.pid !== before.pid && c.status === 'running' ? c : undefined;
    });
    const st = await stack.waitForStatus((s) =>
      SERVICES.every((n) =>
        s.services
          .find((x) => x.service === n)
          ?.instances.some((i) => i.pid === after.pid && i.health === 'healthy'),
      ),
    );
    expect(st.ok).toBe(true);
    const ps = await stack.berth('images');
    expect(ps.stdout).toContain(f.registry.host);
  }, 60_000);

  it('a berth up after the supervisor died adopts the process and the embedded servers; one without --cohosted replaces them', async () => {
    const before = stack.state();
    if (!before) throw new Error('no state file');
    const pids = (st: typeof before) => st.children.map((c) => `${c.name}:${c.pid}`).sort();
    process.kill(before.pid, 'SIGKILL');
    await waitFor('the supervisor to be gone', () => !alive(before.pid));
    const up = await stack.berth('up', '--cohosted');
    expect(up.code, up.stderr).toBe(0);
    expect(up.stderr).toContain('takes over what it left running');
    const after = stack.state();
    expect(after?.pid).not.toBe(before.pid);
    expect(pids(after as typeof before)).toEqual(pids(before));
    expect((await stack.status()).json.ok).toBe(true);

    // The same stack as separate processes: the co-hosted one is stopped before they start.
    const cohosted = cohostedChild().pid as number;
    process.kill((after as typeof before).pid, 'SIGKILL');
    await waitFor('the supervisor to be gone', () => !alive((after as typeof before).pid));
    const separate = await stack.berth('up');
    expect(separate.code, separate.stderr).toBe(0);
    expect(alive(cohosted)).toBe(false);
    const names = stack
      .state()
      ?.children.filter((c) => c.kind === 'service')
      .map((c) => c.name);
    expect(names?.sort()).toEqual([...SERVICES].sort());
    // Back to co-hosted for the tests below.
    expect((await stack.berth('down')).code).toBe(0);
    const again = await stack.berth('up', '--cohosted');
    expect(again.code, again.stderr).toBe(0);
  }, 120_000);

  it('refuses replicas, which need separate processes', async () => {
    const r = await runBerth(['up', '--cohosted', '--replicas', 'image-service=2'], { env: stack.env });
    // The plan is checked before anything else, so the running stack is untouched.
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/replicas of "image-service" \(2\) need separate processes/);
  });

  it('stops the services in order and the process with them on down', async () => {
    const pid = cohostedChild().pid as number;
    const down = await stack.berth('down');
    expect(down.code, down.stderr).toBe(0);
    expect(down.stdout).toContain('cohosted#1');
    expect(alive(pid)).toBe(false);
    const taskLog = readFileSync(join(hostLayout(stack).serviceLogs, 'task-service.log'), 'utf8');
    expect(taskLog).toContain('"msg":"stopped"');
  }, 90_000);
});
