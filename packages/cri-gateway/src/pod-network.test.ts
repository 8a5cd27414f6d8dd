import { existsSync, readdirSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { testCniNetwork } from '@berth/testing';
import { describe, expect, it } from 'vitest';
import { natsShimNetworkPort } from './runtime/nats-ports.js';
import { createCtr, exec, type Json, rpc, runPod, until, usePodStack } from './testdata/pod-fixtures.js';

// CRI pods on a real CNI network through the node's shim (bridge + host-local + portmap from
// /usr/lib/cni), on the stack's private conf dir, bridge, subnet and lease store.

const stack = usePodStack();

type PodStatus = { status: { state: string; network: { ip: string; additional_ips: { ip: string }[] } } };

/** The pod's primary IP from PodSandboxStatus. */
async function podIp(pod: string): Promise<string> {
  return (await rpc<PodStatus>('PodSandboxStatus', { pod_sandbox_id: pod })).status.network.ip;
}

/** True when `ip` is inside the IPv4 CIDR `subnet`. */
function inSubnet(ip: string, subnet: string): boolean {
  const n = (a: string) => a.split('.').reduce((x, o) => x * 256 + Number(o), 0);
  const [base = '', bits = '32'] = subnet.split('/');
  const size = 2 ** (32 - Number(bits));
  return Math.floor(n(ip) / size) === Math.floor(n(base) / size);
}

/** A TCP port free on 127.0.0.1 right now. */
async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const addr = srv.address();
  await new Promise((r) => srv.close(r));
  if (!addr || typeof addr === 'string') throw new Error('no port');
  return addr.port;
}

/** A busybox container serving `body` over HTTP on `port` with httpd, started. */
async function serveHttp(pod: string, podName: string, name: string, port: number, body: string) {
  const id = await createCtr(pod, podName, name, {
    command: [
      'sh',
      '-c',
      `mkdir -p /tmp/www && echo ${body} > /tmp/www/index.html && exec httpd -f -p ${port} -h /tmp/www`,
    ],
  });
  await rpc('StartContainer', { container_id: id });
  return id;
}

describe('CRI pod network over CNI', () => {
  let a: string;
  let b: string;
  let ipA: string;

  it('reports RuntimeReady (every service answers the gateway) and NetworkReady', async () => {
    const st = await rpc<{ status: { conditions: Json[] } }>('Status', {});
    // The gateway runs under its own login here: it must be allowed to ask each service's info.
    expect(st.status.conditions).toContainEqual({
      type: 'RuntimeReady',
      status: true,
      reason: '',
      message: '',
    });
    expect(st.status.conditions).toContainEqual({
      type: 'NetworkReady',
      status: true,
      reason: '',
      message: '',
    });
    const nets = (await natsShimNetworkPort(stack().nc, stack().node).list()).networks;
    expect(nets[0]).toMatchObject({
      default: true,
      subnets: [stack().cni.subnet],
      plugins: ['bridge', 'portmap'],
    });
  });

  it('gives a pod an address on the bridge, leased by host-local', async () => {
    a = await runPod('net-a');
    ipA = await podIp(a);
    expect(inSubnet(ipA, stack().cni.subnet), `${ipA} in ${stack().cni.subnet}`).toBe(true);
    expect(readdirSync(stack().cni.leaseDir)).toContain(ipA);
    const st = await rpc<PodStatus>('PodSandboxStatus', { pod_sandbox_id: a });
    expect(st.status.network.additional_ips).toEqual([]);
  });

  it('lets two pods reach each other by IP', async () => {
    await serveHttp(a, 'net-a', 'web', 8080, 'hello-from-a');
    b = await runPod('net-b');
    const ipB = await podIp(b);
    expect(ipB).not.toBe(ipA);
    expect(inSubnet(ipB, stack().cni.subnet)).toBe(true);
    const client = await createCtr(b, 'net-b', 'client');
    await rpc('StartContainer', { container_id: client });
    // httpd starts listening shortly after the container starts: wait on the real answer.
    const got = await until('pod b to fetch from pod a', async () => {
      // No -T: Debian's busybox-static wget crashes (SIGSEGV) with a timeout; ExecSync bounds it.
      const r = await exec(client, ['wget', '-q', '-O', '-', `http://${ipA}:8080/`]);
      return r.exit_code === 0 ? r.stdout.toString() : undefined;
    });
    expect(got).toBe('hello-from-a\n');
    const own = await exec(client, ['ip', '-4', '-o', 'addr', 'show', 'eth0']);
    expect(own.stdout.toString()).toContain(` ${ipB}/`);
  });

  it('publishes a port mapping on 127.0.0.1:hostPort', async () => {
    const hostPort = await freePort();
    const pod = await runPod('net-port', {
      port_mappings: [{ protocol: 'TCP', container_port: 80, host_port: hostPort, host_ip: '127.0.0.1' }],
    });
    await serveHttp(pod, 'net-port', 'web', 80, 'published');
    const body = await until('the published port to answer', async () => {
      const r = await fetch(`http://127.0.0.1:${hostPort}/`).catch(() => undefined);
      return r?.ok ? r.text() : undefined;
    });
    expect(body).toBe('published\n');
    await rpc('RemovePodSandbox', { pod_sandbox_id: pod });
    await expect(fetch(`http://127.0.0.1:${hostPort}/`)).rejects.toThrow();
  });

  it('gives a pod in the host network no CNI network', async () => {
    const before = (await natsShimNetworkPort(stack().nc, stack().node).list()).pods.length;
    const pod = await runPod('net-host', {
      linux: { security_context: { namespace_options: { network: 'NODE', pid: 'CONTAINER', ipc: 'POD' } } },
    });
    expect(await podIp(pod)).toBe('');
    expect((await natsShimNetworkPort(stack().nc, stack().node).list()).pods).toHaveLength(before);
    await rpc('RemovePodSandbox', { pod_sandbox_id: pod });
  });

  it('releases the address on stop, and remove is idempotent', async () => {
    await rpc('StopPodSandbox', { pod_sandbox_id: a });
    expect(readdirSync(stack().cni.leaseDir)).not.toContain(ipA);
    await rpc('StopPodSandbox', { pod_sandbox_id: a });
    await rpc('RemovePodSandbox', { pod_sandbox_id: a });
    await rpc('RemovePodSandbox', { pod_sandbox_id: b });
    await rpc('RemovePodSandbox', { pod_sandbox_id: b });
    const leases = readdirSync(stack().cni.leaseDir).filter((f) => /^\d+\.\d+\.\d+\.\d+$/.test(f));
    expect(leases).toEqual([]);
    expect((await natsShimNetworkPort(stack().nc, stack().node).list()).pods).toEqual([]);
    const netns = join(stack().runRoot, 'netns');
    expect(existsSync(netns) ? readdirSync(netns) : []).toEqual([]);
  });

  it("makes the kubelet's pod CIDR the default network's range, refuses a change under pods and a bad one", async () => {
    const port = natsShimNetworkPort(stack().nc, stack().node);
    // A free /24 other than the stack's own (testCniNetwork only picks names and a subnet).
    let cidr = stack().cni.subnet;
    while (cidr === stack().cni.subnet) cidr = testCniNetwork(stack().root).subnet;
    await rpc('UpdateRuntimeConfig', { runtime_config: { network_config: { pod_cidr: cidr } } });
    expect((await port.list()).networks[0]).toMatchObject({ default: true, subnets: [cidr] });
    const pod = await runPod('net-cidr');
    const ip = await podIp(pod);
    expect(inSubnet(ip, cidr), `${ip} in ${cidr}`).toBe(true);
    // The range of a network with pods cannot move: the kubelet is told, and may retry later.
    const busy = await rpc('UpdateRuntimeConfig', {
      runtime_config: { network_config: { pod_cidr: stack().cni.subnet } },
    }).catch((e: { code: number; details: string }) => e);
    expect(busy).toMatchObject({ code: 9 });
    expect((busy as { details: string }).details).toMatch(/1 pod\(s\) are attached/);
    await rpc('RemovePodSandbox', { pod_sandbox_id: pod });
    // Back to the stack's own subnet once no pod is attached.
    await rpc('UpdateRuntimeConfig', {
      runtime_config: { network_config: { pod_cidr: stack().cni.subnet } },
    });
    expect((await port.list()).networks[0]).toMatchObject({ subnets: [stack().cni.subnet] });
    const err = await rpc('UpdateRuntimeConfig', {
      runtime_config: { network_config: { pod_cidr: '10.244.1.0/33' } },
    }).catch((e: { code: number; details: string }) => e);
    expect(err).toMatchObject({
      code: 3,
      details: 'runtime_config.network_config.pod_cidr "10.244.1.0/33" is not a CIDR',
    });
  });
});
