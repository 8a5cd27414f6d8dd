/**
 * `berth up` start-time benchmark (issue 13). Prints figures; asserts nothing. For each mode
 * (separate processes, then co-hosted), UP_RUNS times (3): `berth up` in an isolated environment,
 * timed until every service answers, then each process's own milestones read from the logs
 * (pino's `time` of a service's first line and of its "serving" line, relative to the supervisor's
 * first line), then `berth down`. Env: UP_RUNS, UP_MODES (separate,cohosted).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { freePort } from '@berth/testing';
import { isolatedEnv, runBerth } from '../tests/harness/berth.js';
import { makeStack, readStackState } from '../tests/harness/stack.js';

const RUNS = Number(process.env.UP_RUNS ?? 3);
const MODES = (process.env.UP_MODES ?? 'separate,cohosted').split(',').filter(Boolean);
const load = () =>
  loadavg()
    .map((l) => l.toFixed(1))
    .join(' ');

/** CPU time (user + system) a process has used so far, in ms, from /proc (clock ticks of 10 ms). */
function cpuMs(pid: number): number | undefined {
  try {
    // Fields after the command's closing parenthesis: utime and stime are the 12th and 13th.
    const rest = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
    return (Number(rest[11]) + Number(rest[12])) * 10;
  } catch {
    return undefined;
  }
}

/** Every JSON log line under `dir` (recursively) with a numeric `time`, per file. */
function logLines(dir: string): Map<string, { time: number; msg?: string }[]> {
  const out = new Map<string, { time: number; msg?: string }[]>();
  for (const entry of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (!entry.isFile() || !entry.name.endsWith('.log')) continue;
    const path = join(entry.parentPath, entry.name);
    const lines = readFileSync(path, 'utf8')
      .split('\n')
      .flatMap((l) => {
        try {
          const j = JSON.parse(l) as { time?: number | string; msg?: string };
          const t = typeof j.time === 'string' ? Date.parse(j.time) : j.time;
          return typeof t === 'number' && Number.isFinite(t) ? [{ time: t, msg: j.msg }] : [];
        } catch {
          return [];
        }
      });
    if (lines.length > 0) out.set(path.slice(dir.length + 1), lines);
  }
  return out;
}

for (const mode of MODES) {
  for (let run = 1; run <= RUNS; run++) {
    const iso = await isolatedEnv({
      env: {
        BERTH_EMBEDDED_NATS_PORT: String(await freePort()),
        BERTH_EMBEDDED_REDIS_PORT: String(await freePort()),
      },
    });
    const before = load();
    const t0 = Date.now();
    const up = await runBerth(['up', ...(mode === 'cohosted' ? ['--cohosted'] : [])], { env: iso.env });
    const took = Date.now() - t0;
    const stack = makeStack(iso, up);
    try {
      if (up.code !== 0) throw new Error(`berth up (${mode}) failed:\n${up.stderr}`);
      console.log(`\n[${mode} #${run}] berth up ${took} ms; load ${before} -> ${load()}`);
      const st = readStackState(iso.runRoot);
      const cpu = [{ name: 'supervisor', pid: st?.pid ?? null }, ...(st?.children ?? [])]
        .filter((c) => c.pid !== null)
        .map((c) => `${c.name} ${cpuMs(c.pid as number) ?? '?'}`);
      console.log(`  CPU ms used so far: ${cpu.join(', ')}`);
      for (const root of [iso.stateRoot, iso.runRoot]) {
        for (const [file, lines] of logLines(root)) {
          const first = lines[0] as { time: number };
          const serving = lines.find((l) => /serving|listening|ready|started/i.test(l.msg ?? ''));
          console.log(
            `  ${file.padEnd(48)} first +${first.time - t0} ms` +
              (serving ? `, "${serving.msg}" +${serving.time - t0} ms` : ''),
          );
          if (process.env.UP_VERBOSE) for (const l of lines) console.log(`      +${l.time - t0} ${l.msg}`);
        }
      }
    } finally {
      await stack.stop();
    }
  }
}
