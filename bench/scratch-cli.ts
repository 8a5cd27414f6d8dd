import { existsSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { loadavg } from 'node:os';
import { startContainerStack } from '../tests/e2e/containers-stack.js';
import { BERTH_BIN } from '../tests/harness/berth.js';
const N = Number(process.env.BENCH_N ?? 15);
const BASE = '/tmp/berth-base/packages/cli/bin/berth.js';
const s = await startContainerStack();
const pct = (xs: number[], p: number) => { const a = [...xs].sort((x, y) => x - y); return a[Math.min(a.length - 1, Math.ceil((p / 100) * a.length) - 1)] ?? NaN; };
try {
  const image = (await s.importBusybox('berth.bench/busybox:latest')).name;
  for (let i = 0; i < 3; i++) await s.berth(['create', '--name', `b-${i}`, image, 'true']);
  const timed = existsSync('/usr/bin/time');
  const once = (bin: string, args: string[]) => {
    const a = performance.now();
    const r = spawnSync('/usr/bin/time', ['-f', '@cpu %U %S', process.execPath, bin, ...args], { env: s.env, stdio: ['ignore', 'ignore', 'pipe'] });
    const wall = performance.now() - a;
    if (r.status !== 0) throw new Error(`${bin} ${args} ${r.status} ${r.stderr}`);
    const m = /@cpu ([\d.]+) ([\d.]+)/.exec(r.stderr.toString());
    return { wall, cpu: m ? (Number(m[1]) + Number(m[2])) * 1000 : NaN };
  };
  console.log(`load ${loadavg()[0]?.toFixed(2)}, N=${N}, /usr/bin/time ${timed}`);
  for (const args of [['--version'], ['ps', '-a'], ['images']]) {
    const res: Record<string, { wall: number[]; cpu: number[] }> = { base: { wall: [], cpu: [] }, traces: { wall: [], cpu: [] } };
    once(BASE, args); once(BERTH_BIN, args);
    for (let i = 0; i < N; i++) {
      for (const [k, bin] of [['base', BASE], ['traces', BERTH_BIN]] as const) {
        const r = once(bin, args);
        res[k]!.wall.push(r.wall); res[k]!.cpu.push(r.cpu);
      }
    }
    for (const k of ['base', 'traces']) console.log(`${k.padEnd(7)} berth ${args.join(' ').padEnd(10)} wall p50 ${pct(res[k]!.wall, 50).toFixed(1)} ms p90 ${pct(res[k]!.wall, 90).toFixed(1)} ms  cpu p50 ${pct(res[k]!.cpu, 50).toFixed(0)} ms`);
  }
} finally {
  await s.stop();
}
