import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { launch, stopProc, tcpOpen, waitReady } from './proc.js';
import { natsTlsBlock, type ServerTls, tempDir } from './servers.js';

/** One nats-server of a test cluster. */
export interface NatsMember {
  name: string;
  /** Client URL (`nats://127.0.0.1:<port>`). */
  url: string;
  port: number;
  clusterPort: number;
  monitorPort: number;
  proc: ChildProcess;
  output(): string;
  /** SIGKILL, resolving once the process is gone (no goodbye to clients or routes). */
  kill(): Promise<void>;
  /** Starts it again on the same ports, routed to the other members. */
  restart(): Promise<void>;
}

/** Several nats-servers routed into one cluster on loopback. */
export interface NatsCluster {
  members: NatsMember[];
  /** Every member's client URL, comma-separated, as berth's `natsUrl` takes a server list. */
  url: string;
  /** The member whose client port is in `server` (nats.js's `getServer()`, `host:port`). */
  memberAt(server: string): NatsMember | undefined;
  /**
   * True when `member` knows of a subscription on exactly `subject`: one of its own clients'
   * (subsz), or one another member announced over a route (routez). A message published there
   * before that would be dropped: interest crosses routes asynchronously.
   */
  hasInterest(member: NatsMember, subject: string): Promise<boolean>;
  /** Resolves once every running member has a route to every other running member. */
  waitFormed(timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

const alive = (p: ChildProcess) => p.exitCode === null && p.signalCode === null;

async function killHard(proc: ChildProcess): Promise<void> {
  if (!alive(proc)) return;
  const exited = once(proc, 'exit');
  proc.kill('SIGKILL');
  await exited;
}

async function routesOf(monitorPort: number): Promise<number> {
  const res = await fetch(`http://127.0.0.1:${monitorPort}/routez`);
  return ((await res.json()) as { num_routes: number }).num_routes;
}

/**
 * Starts `size` nats-servers (3 by default) clustered over routes on loopback. Every port is
 * picked by its server (port -1) and read back from its ports file, so nothing races for ports;
 * each later member routes to the earlier ones and the servers' gossip completes the mesh.
 * With `tls`, clients must use TLS (the routes stay plain, on loopback).
 */
export async function startNatsCluster(opts: { size?: number; tls?: ServerTls } = {}): Promise<NatsCluster> {
  const size = opts.size ?? 3;
  const members: NatsMember[] = [];
  const dirs: string[] = [];
  const conf = (i: number, ports: { client: number; cluster: number; http: number }, routes: number[]) =>
    [
      `server_name: berth-test-${i}`,
      'host: 127.0.0.1',
      `port: ${ports.client}`,
      `http: "127.0.0.1:${ports.http}"`,
      `cluster { name: berth-test, host: 127.0.0.1, port: ${ports.cluster}, routes: [${routes
        .map((p) => `"nats-route://127.0.0.1:${p}"`)
        .join(', ')}] }`,
      opts.tls ? natsTlsBlock(opts.tls) : '',
    ].join('\n');
  for (let i = 0; i < size; i++) {
    const dir = await tempDir(`nats-${i}`);
    const file = join(dir, 'nats.conf');
    const routes = members.map((m) => m.clusterPort);
    await writeFile(file, conf(i, { client: -1, cluster: -1, http: -1 }, routes));
    let { proc, output } = launch('nats-server', ['-c', file, '--ports_file_dir', dir], dir);
    const ports = { client: 0, cluster: 0, http: 0 };
    await waitReady(`nats-server ${i}`, proc, output, async () => {
      const f = (await readdir(dir)).find((n) => n.endsWith('.ports'));
      if (!f) return false;
      const p = JSON.parse(await readFile(join(dir, f), 'utf8')) as Record<string, string[] | undefined>;
      const port = (key: string) => Number(new URL(p[key]?.[0] ?? 'x://h:0').port);
      Object.assign(ports, { client: port('nats'), cluster: port('cluster'), http: port('monitoring') });
      return ports.client > 0 && ports.cluster > 0 && ports.http > 0 && (await tcpOpen(ports.client));
    });
    const member: NatsMember = {
      name: `berth-test-${i}`,
      url: `nats://127.0.0.1:${ports.client}`,
      port: ports.client,
      clusterPort: ports.cluster,
      monitorPort: ports.http,
      proc,
      output: () => output(),
      kill: () => killHard(member.proc),
      async restart() {
        await killHard(member.proc);
        const others = members.filter((m) => m !== member).map((m) => m.clusterPort);
        await writeFile(file, conf(i, ports, others));
        ({ proc, output } = launch('nats-server', ['-c', file], dir));
        member.proc = proc;
        await waitReady(`nats-server ${i} (restart)`, proc, output, () => tcpOpen(ports.client));
      },
    };
    members.push(member);
    dirs.push(dir);
  }
  const cluster: NatsCluster = {
    members,
    url: members.map((m) => m.url).join(','),
    memberAt: (server) => members.find((m) => server.endsWith(`:${m.port}`)),
    async hasInterest(member, subject) {
      const base = `http://127.0.0.1:${member.monitorPort}`;
      const local = (await (
        await fetch(`${base}/subsz?subs=1&test=${encodeURIComponent(subject)}`)
      ).json()) as {
        subscriptions_list?: { subject: string }[];
      };
      if (local.subscriptions_list?.some((x) => x.subject === subject)) return true;
      const routed = (await (await fetch(`${base}/routez?subs=1`)).json()) as {
        routes?: { subscriptions_list?: string[] }[];
      };
      return routed.routes?.some((r) => r.subscriptions_list?.includes(subject)) ?? false;
    },
    async waitFormed(timeoutMs = 20_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const up = members.filter((m) => alive(m.proc));
        const counts = await Promise.all(up.map((m) => routesOf(m.monitorPort).catch(() => -1)));
        if (counts.every((n) => n >= up.length - 1)) return;
        if (Date.now() > deadline) {
          throw new Error(`nats cluster not formed within ${timeoutMs} ms (routes: ${counts.join(', ')})`);
        }
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    async stop() {
      await Promise.all(members.map((m) => stopProc(m.proc)));
      await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
    },
  };
  await cluster.waitFormed();
  return cluster;
}
