/**
 * berth's CRI gRPC server alone, in this process, on a socket stand-in (no syscalls, no client):
 * what one unary call costs its request/response machinery (HTTP/2 frames, HPACK, gRPC framing,
 * protobuf decode, the call's span, metrics and access log, the reply's frames). The client's
 * octets are grpc-go's (gateway/testdata/raw-h2.ts GoLikeEncoder; a grpc-timeout per call, and
 * the WINDOW_UPDATE and BDP PING a Go client sends after each reply). Prints CPU µs per call and
 * the JavaScript heap allocated per call (what drives the young-generation collections); asserts
 * nothing. The ImageStatus handler answers from memory with kept bytes, as the gateway's does for
 * an image its view holds; Version is the async handler of every call that awaits something.
 * Run: pnpm --filter @berth/bench run cri-server   Env: BENCH_N (calls per round, 20000), BENCH_ROUNDS
 * (5), BENCH_RPC (ImageStatus or Version). Node flags as the stack gives the gateway:
 * `NODE_OPTIONS='--optimize-for-size'` (--liftoff-only is not allowed in NODE_OPTIONS; it does
 * not touch JavaScript).
 */
import { EventEmitter } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { getHeapSpaceStatistics } from 'node:v8';
import { createBerthCriServer, implemented, withEncoding } from '@berth/cri-gateway';
import { createLogger, startMetrics, startTelemetry } from '@berth/kit';
import {
  Flag,
  FrameType,
  frame,
  GoLikeEncoder,
  goHeaders,
  grpcMessage,
  hpackString,
  PREFACE,
} from '../packages/cri-gateway/src/testdata/raw-h2.js';

const N = Number(process.env.BENCH_N ?? 20_000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const RPC = process.env.BENCH_RPC ?? 'ImageStatus';

/** The parts of a net.Socket berth's HTTP/2 connection uses; writes are counted and dropped. */
class SocketStandIn extends EventEmitter {
  destroyed = false;
  writableEnded = false;
  writableNeedDrain = false;
  closed = false;
  writes = 0;
  setNoDelay(): this {
    return this;
  }
  write(_data: Buffer): boolean {
    this.writes++;
    return true;
  }
  end(): this {
    this.writableEnded = true;
    return this;
  }
  destroy(): this {
    this.destroyed = true;
    this.closed = true;
    this.emit('close');
    return this;
  }
}

const root = await mkdtemp(join(tmpdir(), 'berth-cri-server-'));
const log = createLogger({ service: 'cri-gateway', node: 'bench', level: 'info' });
// As the gateway runs: a span per call into the span store, metrics with their SDK.
// BENCH_TELEMETRY=0 / BENCH_METRICS=0 leave either out (to see what each costs).
const telemetry =
  process.env.BENCH_TELEMETRY === '0'
    ? undefined
    : startTelemetry({
        service: 'cri-gateway',
        version: '0.0.0',
        node: 'bench',
        storeDir: join(root, 'traces'),
      });
const metrics =
  process.env.BENCH_METRICS === '0'
    ? undefined
    : await startMetrics({
        service: 'cri-gateway',
        version: '0.0.0',
        node: 'bench',
        address: { host: '127.0.0.1', port: 0 },
      });

// An ImageStatus reply as the image view's kept one: same object, bytes kept with it.
const image = {
  id: `sha256:${'ab'.repeat(32)}`,
  repo_tags: ['registry.k8s.io/e2e-test-images/busybox:1.29-2'],
  repo_digests: [`registry.k8s.io/e2e-test-images/busybox@sha256:${'cd'.repeat(32)}`],
  size: '1374910',
  uid: null,
  username: '',
  spec: {
    image: `sha256:${'ab'.repeat(32)}`,
    annotations: {},
    user_specified_image: '',
    runtime_handler: '',
  },
  pinned: false,
};
const { criServiceDefinition, CriService } = await import('@berth/cri-gateway');
const imageStatusDef = criServiceDefinition(CriService.image).ImageStatus;
const runtimeDef = criServiceDefinition(CriService.runtime).Version;
if (!imageStatusDef || !runtimeDef) throw new Error('no ImageStatus or Version in the CRI definitions');
const kept = withEncoding(
  { image, info: {} },
  imageStatusDef.responseSerialize({ image, info: {} } as never) as Buffer,
);
const server = createBerthCriServer({
  deps: { log } as never,
  handlers: { ...implemented, 'ImageService/ImageStatus': () => kept },
  onProtocolError: (err) => {
    throw err;
  },
});
const socket = new SocketStandIn();
server.accept(socket as never);
socket.emit('data', Buffer.concat([PREFACE, frame(FrameType.SETTINGS, 0, 0, Buffer.alloc(0))]));

const path =
  RPC === 'Version' ? '/runtime.v1.RuntimeService/Version' : '/runtime.v1.ImageService/ImageStatus';
const body = (RPC === 'Version' ? runtimeDef : imageStatusDef).requestSerialize(
  (RPC === 'Version' ? { version: 'v1' } : { image: { image: image.repo_tags[0] }, verbose: false }) as never,
) as Buffer;
const hpack = new GoLikeEncoder();
let stream = 1;
const windowUpdate = frame(FrameType.WINDOW_UPDATE, 0, 0, Buffer.from([0, 0, 2, 0]));
const ping = frame(FrameType.PING, 0, 0, Buffer.alloc(8));
const message = grpcMessage(body);

/** One call's client octets: its HEADERS and DATA, after the previous reply's WINDOW_UPDATE and PING. */
function request(): Buffer {
  const id = stream;
  stream += 2;
  // The fields every call repeats come from the dynamic table after the first call; the
  // grpc-timeout differs per call (a literal here, so the test encoder's table stays bounded).
  const block = Buffer.concat([
    hpack.encode(goHeaders(path, 'localhost').filter(([k]) => k !== 'grpc-timeout')),
    Buffer.of(0),
    hpackString('grpc-timeout'),
    hpackString(`${19_000_000 + (id % 997)}u`),
  ]);
  return Buffer.concat([
    ...(id > 1 ? [windowUpdate, ping] : []),
    frame(FrameType.HEADERS, Flag.END_HEADERS, id, block),
    frame(FrameType.DATA, Flag.END_STREAM, id, message),
  ]);
}

const newSpaceUsed = () =>
  getHeapSpaceStatistics().find((s) => s.space_name === 'new_space')?.space_used_size ?? 0;
const tick = () => new Promise<void>((resolve) => setImmediate(resolve));

async function round(n: number): Promise<{ cpuUs: number; allocBytes: number }> {
  let alloc = 0;
  let measured = 0;
  const cpu0 = process.cpuUsage();
  for (let i = 0; i < n; i++) {
    const chunk = request();
    const before = newSpaceUsed();
    socket.emit('data', chunk);
    await tick();
    const after = newSpaceUsed();
    // A collection in between leaves no figure for this call.
    if (after >= before) {
      alloc += after - before;
      measured++;
    }
  }
  const cpu = process.cpuUsage(cpu0);
  return { cpuUs: (cpu.user + cpu.system) / n, allocBytes: measured ? alloc / measured : 0 };
}

await round(3000);
console.log(
  `berth CRI server in process, ${RPC}: ${ROUNDS} rounds of ${N} calls (CPU includes the loop's setImmediate)`,
);
const cpus: number[] = [];
for (let r = 0; r < ROUNDS; r++) {
  const { cpuUs, allocBytes } = await round(N);
  cpus.push(cpuUs);
  console.log(
    `round ${r + 1}: ${cpuUs.toFixed(1)} µs CPU/call, ${(allocBytes / 1024).toFixed(2)} KiB heap/call`,
  );
}
cpus.sort((a, b) => a - b);
console.log(
  `median ${(cpus[Math.floor(cpus.length / 2)] ?? 0).toFixed(1)} µs CPU/call; ${socket.writes} writes`,
);
await server.close(0);
await telemetry?.shutdown();
await metrics?.shutdown();
await rm(root, { recursive: true, force: true });
