/**
 * Log streaming benchmark (issue 11): a container's CRI log read from the file on its node (what
 * the CLI does for a local container) against the same log streamed by the node's shim over NATS
 * with the kit's flow-controlled stream (what it does for a container on another node), at several
 * windows. Prints figures; asserts nothing. A real shim agent process, runc and conmon.
 * Run: pnpm --filter @berth/bench run remote-logs   Env: BENCH_LINES (default 200000), BENCH_ROUNDS (3).
 */
import { open, stat } from 'node:fs/promises';
import { parseCriLine, ShimApi, StreamChannel } from '@berth/api';
import { callStream } from '@berth/kit/stream-call';
import { bindRootfs, makeSpec, newId, startWorld } from '../packages/shim/src/testing/fixture.js';

const LINES = Number(process.env.BENCH_LINES ?? 200_000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const ns = 'bench';

/** Parses every line of a CRI log buffer stream; returns how many lines it saw. */
function counter() {
  let carry = '';
  let lines = 0;
  return {
    feed(b: Uint8Array) {
      const parts = (carry + Buffer.from(b).toString('utf8')).split('\n');
      carry = parts.pop() ?? '';
      for (const p of parts) if (parseCriLine(p)) lines++;
    },
    lines: () => lines,
  };
}

async function readFile(path: string): Promise<number> {
  const fh = await open(path, 'r');
  const c = counter();
  const buf = Buffer.alloc(64 * 1024);
  let offset = 0;
  for (;;) {
    const { bytesRead } = await fh.read(buf, 0, buf.length, offset);
    if (bytesRead === 0) break;
    offset += bytesRead;
    c.feed(buf.subarray(0, bytesRead));
  }
  await fh.close();
  return c.lines();
}

const w = await startWorld();
try {
  const id = newId();
  const spec = await makeSpec(
    ['sh', '-c', `i=0; while [ $i -lt ${LINES} ]; do echo "line $i"; i=$((i+1)); done`],
    {
      cgroupsPath: `/berth-bench/${w.node}/${id}`,
    },
  );
  const st = await w.client.create({ namespace: ns, id, spec, rootfs: bindRootfs(w.rootfs) });
  await w.client.start({ namespace: ns, id });
  await w.client.wait({ namespace: ns, id });
  const size = (await stat(st.logPath as string)).size;
  console.log(`log: ${LINES} lines, ${(size / 1024 / 1024).toFixed(1)} MiB`);
  const report = (name: string, ms: number[], lines: number) => {
    const best = Math.min(...ms);
    console.log(
      `${name.padEnd(22)} best ${best.toFixed(0).padStart(5)} ms  ${((size / 1024 / 1024 / best) * 1000).toFixed(0).padStart(4)} MiB/s  ${lines} lines`,
    );
    return best;
  };
  const fileMs: number[] = [];
  let fileLines = 0;
  for (let r = 0; r < ROUNDS; r++) {
    const t = performance.now();
    fileLines = await readFile(st.logPath as string);
    fileMs.push(performance.now() - t);
  }
  const base = report('file (local CLI)', fileMs, fileLines);
  for (const window of [4, 16, 64]) {
    const ms: number[] = [];
    let lines = 0;
    for (let r = 0; r < ROUNDS; r++) {
      const t = performance.now();
      const s = await callStream(
        w.nc,
        ShimApi,
        'logs',
        { namespace: ns, id, follow: false },
        { node: w.node, namespace: ns, what: 'bench', window },
      );
      const c = counter();
      for await (const ch of s.chunks()) if (ch.channel === StreamChannel.log) c.feed(ch.data);
      ms.push(performance.now() - t);
      lines = c.lines();
    }
    const best = report(`NATS stream, window ${window}`, ms, lines);
    console.log(`${''.padEnd(22)} ratio to the file: ${(best / base).toFixed(2)}x`);
  }
  await w.client.delete({ namespace: ns, id });
} finally {
  await w.close();
}
