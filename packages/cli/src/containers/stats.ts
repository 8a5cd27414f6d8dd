import { BerthError, Code, type ContainerInfo, type ShimStats } from '@berth/api';
import { collectAll } from '@berth/kit/paging';
import type { CliContext } from '../context.js';
import type { TaskClient } from './api.js';
import { table } from './format.js';

/** How far apart the two samples of a CPU % are, and how often `stats` prints: docker's second. */
export const SAMPLE_INTERVAL_MS = 1000;

/** The CPU time of a container at one moment, as its cgroup counted it. */
export interface CpuSample {
  usageNs: number;
  /** When the shim read the cgroup (ms since the epoch). */
  atMs: number;
}

/**
 * The CPU % of `docker stats` between two samples: CPU time used over the time that passed, 100% per
 * busy core (a container spinning on two cores shows 200%). docker divides by the host's CPU time
 * over the interval (wall time x online CPUs) and multiplies by the online CPUs again: the same.
 * Undefined without an earlier sample, when the clock did not move, or when the counter went back
 * (the task was restarted, its cgroup is a new one).
 */
export function cpuPercent(prev: CpuSample | undefined, cur: CpuSample): number | undefined {
  if (!prev) return undefined;
  const wallNs = (cur.atMs - prev.atMs) * 1e6;
  const usedNs = cur.usageNs - prev.usageNs;
  if (wallNs <= 0 || usedNs < 0) return undefined;
  return (usedNs / wallNs) * 100;
}

/** `12.34%`, or `--` when there is no figure. */
export function percentText(p: number | undefined): string {
  return p === undefined ? '--' : `${p.toFixed(2)}%`;
}

/** A byte count in binary units, as docker prints memory: `1.5MiB`. */
export function bytesText(n: number | undefined): string {
  if (n === undefined) return '--';
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < u.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(i === 0 ? 0 : 2)}${u[i]}`;
}

/** One container's sample, or undefined when it stopped meanwhile (and `tolerateStopped`). */
type Sampled = { info: ContainerInfo; stats: ShimStats | undefined };

/**
 * Samples containers: the named ones, or every running one. A named container that stopped since
 * the command started gets no figures when `tolerateStopped`; otherwise its error is thrown.
 */
export async function sample(
  client: TaskClient,
  named: ContainerInfo[] | undefined,
  tolerateStopped: boolean,
): Promise<Sampled[]> {
  const infos = named ?? (await collectAll(client['list-containers'], { status: ['running'] }, 'containers'));
  return Promise.all(
    infos.map(async (info): Promise<Sampled> => {
      try {
        return { info, stats: await client.stats({ id: info.container.id }) };
      } catch (err) {
        if (!tolerateStopped || !(err instanceof BerthError) || err.code !== Code.FAILED_PRECONDITION)
          throw err;
        return { info, stats: undefined };
      }
    }),
  );
}

/**
 * The table of one round of `stats`, CPU % against the previous round's samples (`prev`, keyed by
 * container id), which it updates for the next round.
 */
export function statsRows(rows: Sampled[], prev: Map<string, CpuSample>): string {
  const out = [['CONTAINER ID', 'NAME', 'CPU %', 'MEM USAGE / LIMIT', 'PIDS']];
  for (const { info, stats } of rows) {
    const id = info.container.id;
    if (!stats) {
      prev.delete(id);
      out.push([id.slice(0, 12), info.container.name, '--', '-- / --', '--']);
      continue;
    }
    const cur = { usageNs: stats.cpu.usageNs, atMs: Date.parse(stats.timestamp) };
    const pct = cpuPercent(prev.get(id), cur);
    prev.set(id, cur);
    out.push([
      id.slice(0, 12),
      info.container.name,
      percentText(pct),
      `${bytesText(stats.memory.usageBytes)} / ${bytesText(stats.memory.limitBytes)}`,
      String(stats.pids.current),
    ]);
  }
  return table(out);
}

/**
 * `stats`: CPU %, memory and pids per container, one table a second until interrupted; with
 * `stream` false, one table from two samples a second apart (as `docker stats --no-stream`).
 */
export async function statsCommand(
  client: TaskClient,
  refs: string[],
  stream: boolean,
  ctx: CliContext,
): Promise<number> {
  // Named containers must exist (a typo fails at once); later rounds show a stopped one as "--".
  const named =
    refs.length > 0 ? await Promise.all(refs.map((id) => client['get-container']({ id }))) : undefined;
  const prev = new Map<string, CpuSample>();
  let stopped = false;
  let wake: (() => void) | undefined;
  const stop = () => {
    stopped = true;
    wake?.();
  };
  const pause = () =>
    new Promise<void>((r) => {
      wake = r;
      setTimeout(r, SAMPLE_INTERVAL_MS).unref();
    });
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  try {
    // The first round only gives the CPU counters a starting point.
    statsRows(await sample(client, named, false), prev);
    await pause();
    while (!stopped) {
      ctx.out.write(statsRows(await sample(client, named, stream), prev));
      if (!stream) break;
      await pause();
    }
  } finally {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
  }
  return 0;
}
