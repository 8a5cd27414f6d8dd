/**
 * What one request/reply hop between two Node processes on a node costs over NATS against a
 * direct unix socket, the figure behind the open question of a same-node transport (issue 9:
 * RemoveContainer and CreateContainer are chains of NATS legs). Prints figures; asserts nothing.
 *
 * A child process answers an echo of a ~300-byte JSON body two ways at once: a nats.js
 * subscription on a real nats-server (through the server, as every berth call goes) and a
 * unix-socket server with 4-byte length framing (process to process, no server between). This
 * process calls each N times, one at a time, sleeping G ms between calls: G = 0 is a hot loop,
 * larger gaps let both processes (and nats-server) go idle as the services do between a
 * kubelet's or critest's calls. Transports alternate per call so the load weighs on both alike.
 * Neither side runs the kit (no spans, zod or access lines): only the transport differs.
 *
 * Run: pnpm --filter @berth/bench run transport-hop   Env: BENCH_N (400), BENCH_GAPS (0,2,20).
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createConnection, type Socket } from 'node:net';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { startNats } from '@berth/testing';
import { connect, type NatsConnection } from 'nats';
import { pct } from './measure.js';

const N = Number(process.env.BENCH_N ?? 400);
const GAPS = (process.env.BENCH_GAPS ?? '0,2,20').split(',').map(Number);
const BODY = JSON.stringify({
  id: 'c'.repeat(64),
  namespace: 'k8s.io',
  force: true,
  background: true,
  labels: { 'io.kubernetes.pod.name': 'bench', 'io.kubernetes.container.name': 'ctr' },
  pad: 'x'.repeat(80),
});

// The echo server, run as a child with plain node: both transports in one process, as a service
// would hold both if berth had a direct path.
const CHILD = `
const net = require('node:net');
const { connect } = require(process.env.NATS_MODULE);
(async () => {
  const nc = await connect({ servers: process.env.NATS_URL });
  const sub = nc.subscribe('bench.echo');
  (async () => { for await (const m of sub) m.respond(m.data); })();
  const srv = net.createServer((s) => {
    s.setNoDelay(true);
    let buf = Buffer.alloc(0);
    s.on('data', (d) => {
      buf = buf.length ? Buffer.concat([buf, d]) : d;
      while (buf.length >= 4) {
        const len = buf.readUInt32BE(0);
        if (buf.length < 4 + len) break;
        s.write(buf.subarray(0, 4 + len));
        buf = buf.subarray(4 + len);
      }
    });
  });
  srv.listen(process.env.SOCK, () => process.stdout.write('ready\\n'));
})();
`;

/** One request at a time over a length-framed unix socket. */
function socketCaller(sock: Socket): (body: Buffer) => Promise<void> {
  let waiting: (() => void) | undefined;
  let buf = Buffer.alloc(0);
  sock.on('data', (d) => {
    buf = buf.length ? Buffer.concat([buf, d]) : d;
    if (buf.length >= 4 && buf.length >= 4 + buf.readUInt32BE(0)) {
      buf = buf.subarray(4 + buf.readUInt32BE(0));
      const w = waiting;
      waiting = undefined;
      w?.();
    }
  });
  return (body) =>
    new Promise<void>((resolve) => {
      waiting = resolve;
      const head = Buffer.alloc(4);
      head.writeUInt32BE(body.length);
      sock.write(Buffer.concat([head, body]));
    });
}

const dir = await mkdtemp(join(tmpdir(), 'transport-hop-'));
const nats = await startNats();
const sockPath = join(dir, 'echo.sock');
const child = spawn(process.execPath, ['-e', CHILD], {
  stdio: ['ignore', 'pipe', 'inherit'],
  env: {
    PATH: process.env.PATH,
    NATS_URL: nats.url,
    SOCK: sockPath,
    NATS_MODULE: import.meta.resolve('nats').replace('file://', ''),
  },
});
let nc: NatsConnection | undefined;
try {
  await new Promise<void>((resolve, reject) => {
    child.stdout?.once('data', () => resolve());
    child.once('exit', (code) => reject(new Error(`echo child exited ${code}`)));
  });
  nc = await connect({ servers: nats.url });
  const sock = createConnection(sockPath);
  sock.setNoDelay(true);
  await new Promise((r) => sock.once('connect', r));
  const viaSocket = socketCaller(sock);
  const body = Buffer.from(BODY);
  const natsConn = nc;
  const callers: Record<string, () => Promise<unknown>> = {
    nats: () => natsConn.request('bench.echo', body, { timeout: 5000 }),
    socket: () => viaSocket(body),
  };
  // Warm both paths (JIT, connections) before measuring.
  for (let i = 0; i < 200; i++) for (const c of Object.values(callers)) await c();
  process.stdout.write(
    `one echo of ${body.length} bytes, N=${N} per transport and gap, alternating; load ${loadavg()[0]?.toFixed(2)}\n`,
  );
  process.stdout.write('gap ms  transport     p10 ms    p50 ms    p90 ms\n');
  for (const gap of GAPS) {
    const times: Record<string, number[]> = { nats: [], socket: [] };
    for (let i = 0; i < N; i++) {
      for (const [name, c] of Object.entries(callers)) {
        if (gap > 0) await sleep(gap);
        const t0 = performance.now();
        await c();
        times[name]?.push(performance.now() - t0);
      }
    }
    for (const [name, t] of Object.entries(times)) {
      const f = (p: number) => pct(t, p).toFixed(3).padStart(8);
      process.stdout.write(`${String(gap).padStart(6)}  ${name.padEnd(9)} ${f(10)}  ${f(50)}  ${f(90)}\n`);
    }
  }
  process.stdout.write(`load after ${loadavg()[0]?.toFixed(2)}\n`);
  sock.destroy();
} finally {
  await nc?.close();
  child.kill('SIGKILL');
  await nats.stop();
  await rm(dir, { recursive: true, force: true });
}
