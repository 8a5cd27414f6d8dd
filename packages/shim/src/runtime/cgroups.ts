import { readFileSync } from 'node:fs';
import { readFile, statfs } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { BerthError, Code, type ShimStats } from '@berth/api';

/** statfs magic of a cgroup v2 filesystem. */
const CGROUP2_SUPER_MAGIC = 0x63677270;
/** cpuacct.stat counts in USER_HZ ticks (100 per second on Linux). */
const NS_PER_TICK = 10_000_000;
/** v1 reports "no limit" as a huge page-aligned number. */
const V1_UNLIMITED = 2 ** 62;

let mode: Promise<1 | 2> | undefined;

/**
 * The cgroup version runc uses on this host: v2 only when /sys/fs/cgroup itself is cgroup2 (the
 * unified mode); a hybrid host (v1 controllers plus /sys/fs/cgroup/unified) is v1 for runc too.
 */
export function cgroupVersion(): Promise<1 | 2> {
  mode ??= statfs('/sys/fs/cgroup').then(
    (s) => (s.type === CGROUP2_SUPER_MAGIC ? 2 : 1),
    () => 1 as const,
  );
  return mode;
}

/** One v1 hierarchy: where it is mounted, what it holds, and its root inside the hierarchy. */
interface V1Mount {
  mountPoint: string;
  root: string;
  controllers: string[];
}

/** The cgroup mounts of this host, from a mountinfo text. */
export function parseMountinfo(text: string): { v1: V1Mount[]; v2?: { mountPoint: string; root: string } } {
  const v1: V1Mount[] = [];
  let v2: { mountPoint: string; root: string } | undefined;
  for (const line of text.split('\n')) {
    const sep = line.indexOf(' - ');
    if (sep < 0) continue;
    const left = line.slice(0, sep).split(' ');
    const right = line.slice(sep + 3).split(' ');
    const root = left[3] ?? '/';
    const mountPoint = left[4] ?? '';
    if (right[0] === 'cgroup2') v2 ??= { mountPoint, root };
    else if (right[0] === 'cgroup') {
      const controllers = (right[2] ?? '').split(',').filter((o) => !['rw', 'ro'].includes(o));
      v1.push({ mountPoint, root, controllers });
    }
  }
  return v2 ? { v1, v2 } : { v1 };
}

/** A process's cgroup per v1 controller (or the v2 path under key ""), from /proc/<pid>/cgroup. */
export function parseProcCgroup(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split('\n')) {
    const m = /^(\d+):([^:]*):(.*)$/.exec(line.trim());
    if (!m) continue;
    const [, , ctrls = '', path = '/'] = m;
    if (ctrls === '') out.set('', path);
    for (const c of ctrls.split(',')) if (c) out.set(c, path);
  }
  return out;
}

function within(mountRoot: string, path: string): string {
  if (mountRoot !== '/' && path.startsWith(mountRoot)) return path.slice(mountRoot.length) || '/';
  return path;
}

async function readText(file: string): Promise<string | undefined> {
  try {
    return await readFile(file, 'utf8');
  } catch {
    return undefined;
  }
}

async function readNum(file: string): Promise<number | undefined> {
  const t = (await readText(file))?.trim();
  if (t === undefined || t === '' || t === 'max') return undefined;
  const n = Number(t);
  return Number.isFinite(n) ? n : undefined;
}

/** "key value" lines (memory.stat, cpu.stat, cpuacct.stat, memory.events) as a map. */
export function parseFlatKeyed(text: string | undefined): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of (text ?? '').split('\n')) {
    const [k, v] = line.trim().split(/\s+/);
    if (k && v !== undefined && Number.isFinite(Number(v))) out.set(k, Number(v));
  }
  return out;
}

/** The page fault counters memory.stat has (v1 names them total_pgfault and total_pgmajfault). */
function setFaults(stats: ShimStats, minor: number | undefined, major: number | undefined): void {
  if (minor !== undefined) stats.memory.pageFaults = minor;
  if (major !== undefined) stats.memory.majorPageFaults = major;
}

/** Reads the stats of a cgroup v1 set of directories (one per controller). */
export async function readV1Stats(dirs: { cpuacct?: string; cpu?: string; memory?: string; pids?: string }) {
  const acct = dirs.cpuacct;
  const usage = acct ? ((await readNum(join(acct, 'cpuacct.usage'))) ?? 0) : 0;
  const ticks = parseFlatKeyed(acct ? await readText(join(acct, 'cpuacct.stat')) : undefined);
  const cpuStat = parseFlatKeyed(dirs.cpu ? await readText(join(dirs.cpu, 'cpu.stat')) : undefined);
  const mem = dirs.memory;
  const mstat = parseFlatKeyed(mem ? await readText(join(mem, 'memory.stat')) : undefined);
  const memUsage = mem ? ((await readNum(join(mem, 'memory.usage_in_bytes'))) ?? 0) : 0;
  const limit = mem ? await readNum(join(mem, 'memory.limit_in_bytes')) : undefined;
  const oomCtl = parseFlatKeyed(mem ? await readText(join(mem, 'memory.oom_control')) : undefined);
  const inactive = mstat.get('total_inactive_file') ?? 0;
  const stats: ShimStats = {
    cgroupVersion: 1,
    timestamp: new Date().toISOString(),
    cpu: {
      usageNs: usage,
      userNs: (ticks.get('user') ?? 0) * NS_PER_TICK,
      systemNs: (ticks.get('system') ?? 0) * NS_PER_TICK,
    },
    memory: {
      usageBytes: memUsage,
      workingSetBytes: Math.max(0, memUsage - inactive),
      rssBytes: mstat.get('total_rss') ?? 0,
      cacheBytes: mstat.get('total_cache') ?? 0,
    },
    pids: { current: dirs.pids ? ((await readNum(join(dirs.pids, 'pids.current'))) ?? 0) : 0 },
  };
  if (cpuStat.has('nr_throttled')) stats.cpu.throttledPeriods = cpuStat.get('nr_throttled') ?? 0;
  if (cpuStat.has('throttled_time')) stats.cpu.throttledNs = cpuStat.get('throttled_time') ?? 0;
  if (limit !== undefined && limit < V1_UNLIMITED) stats.memory.limitBytes = limit;
  const max = mem ? await readNum(join(mem, 'memory.max_usage_in_bytes')) : undefined;
  if (max !== undefined) stats.memory.maxUsageBytes = max;
  if (oomCtl.has('oom_kill')) stats.memory.oomKills = oomCtl.get('oom_kill') ?? 0;
  setFaults(stats, mstat.get('total_pgfault'), mstat.get('total_pgmajfault'));
  const pidsMax = dirs.pids ? await readNum(join(dirs.pids, 'pids.max')) : undefined;
  if (pidsMax !== undefined) stats.pids.limit = pidsMax;
  return stats;
}

/** Reads the stats of one cgroup v2 directory. */
export async function readV2Stats(dir: string): Promise<ShimStats> {
  const cpu = parseFlatKeyed(await readText(join(dir, 'cpu.stat')));
  const mstat = parseFlatKeyed(await readText(join(dir, 'memory.stat')));
  const events = parseFlatKeyed(await readText(join(dir, 'memory.events')));
  const usage = (await readNum(join(dir, 'memory.current'))) ?? 0;
  const stats: ShimStats = {
    cgroupVersion: 2,
    timestamp: new Date().toISOString(),
    cpu: {
      usageNs: (cpu.get('usage_usec') ?? 0) * 1000,
      userNs: (cpu.get('user_usec') ?? 0) * 1000,
      systemNs: (cpu.get('system_usec') ?? 0) * 1000,
    },
    memory: {
      usageBytes: usage,
      workingSetBytes: Math.max(0, usage - (mstat.get('inactive_file') ?? 0)),
      rssBytes: mstat.get('anon') ?? 0,
      cacheBytes: mstat.get('file') ?? 0,
    },
    pids: { current: (await readNum(join(dir, 'pids.current'))) ?? 0 },
  };
  if (cpu.has('nr_throttled')) stats.cpu.throttledPeriods = cpu.get('nr_throttled') ?? 0;
  if (cpu.has('throttled_usec')) stats.cpu.throttledNs = (cpu.get('throttled_usec') ?? 0) * 1000;
  const limit = await readNum(join(dir, 'memory.max'));
  if (limit !== undefined) stats.memory.limitBytes = limit;
  const peak = await readNum(join(dir, 'memory.peak'));
  if (peak !== undefined) stats.memory.maxUsageBytes = peak;
  if (events.has('oom_kill')) stats.memory.oomKills = events.get('oom_kill') ?? 0;
  setFaults(stats, mstat.get('pgfault'), mstat.get('pgmajfault'));
  const pidsMax = await readNum(join(dir, 'pids.max'));
  if (pidsMax !== undefined) stats.pids.limit = pidsMax;
  return stats;
}

/** The memory controller's hierarchy as runc uses it: the version, and where it is mounted. */
export interface MemoryHierarchy {
  version: 1 | 2;
  dir?: string;
}

let memoryHierarchy: Promise<MemoryHierarchy> | undefined;

/**
 * This host's memory hierarchy, found once: /sys/fs/cgroup on v2 (runc's fixed unified mount
 * point), the v1 hierarchy holding the memory controller otherwise (from mountinfo, as runc finds
 * it). A failed look is not kept: the next call tries again.
 */
function hostMemoryHierarchy(): Promise<MemoryHierarchy> {
  memoryHierarchy ??= (async (): Promise<MemoryHierarchy> => {
    if ((await cgroupVersion()) === 2) return { version: 2, dir: '/sys/fs/cgroup' };
    const mounts = parseMountinfo(await readFile('/proc/self/mountinfo', 'utf8'));
    return { version: 1, dir: mounts.v1.find((x) => x.controllers.includes('memory'))?.mountPoint };
  })().catch((err: unknown) => {
    memoryHierarchy = undefined;
    throw err;
  });
  return memoryHierarchy;
}

/**
 * How many processes the kernel's OOM killer ended in the cgroup of an OCI spec's absolute
 * `linux.cgroupsPath`, where runc puts it (cgroupfs: the path, cleaned as runc cleans it so it
 * never leaves the hierarchy, under the hierarchy's mount): `oom_kill` of memory.events on v2, of
 * memory.oom_control on v1 (kernel 4.13 on). Undefined when the cgroup, or its count, is not there
 * (gone with `runc delete`, a relative path). The file is read inline (a kernel-made file of a few
 * lines: less than a thread-pool trip). `hierarchy` is for tests; this host's otherwise.
 */
export async function oomKillsOf(
  cgroupsPath: string,
  hierarchy?: MemoryHierarchy,
): Promise<number | undefined> {
  if (!cgroupsPath.startsWith('/')) return undefined;
  const h = hierarchy ?? (await hostMemoryHierarchy());
  if (!h.dir) return undefined;
  const file = join(
    h.dir,
    posix.join('/', cgroupsPath),
    h.version === 2 ? 'memory.events' : 'memory.oom_control',
  );
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
  return parseFlatKeyed(text).get('oom_kill');
}

/**
 * One stats sample of the cgroup a live process (a task's init) is in, in whichever cgroup version
 * runc uses here. The process must be alive: its /proc entry names the cgroup.
 */
export async function statsOfPid(pid: number, name: string): Promise<ShimStats> {
  const procCg = await readText(`/proc/${pid}/cgroup`);
  if (procCg === undefined) {
    throw new BerthError(Code.FAILED_PRECONDITION, `task "${name}" is not running (no process ${pid})`);
  }
  const cg = parseProcCgroup(procCg);
  const mounts = parseMountinfo(await readFile('/proc/self/mountinfo', 'utf8'));
  if ((await cgroupVersion()) === 2) {
    if (!mounts.v2) throw new BerthError(Code.INTERNAL, 'no cgroup2 mount found');
    return readV2Stats(join(mounts.v2.mountPoint, within(mounts.v2.root, cg.get('') ?? '/')));
  }
  const dirOf = (ctrl: string): string | undefined => {
    const m = mounts.v1.find((x) => x.controllers.includes(ctrl));
    const p = cg.get(ctrl);
    return m && p ? join(m.mountPoint, within(m.root, p)) : undefined;
  };
  const dirs: { cpuacct?: string; cpu?: string; memory?: string; pids?: string } = {};
  for (const c of ['cpuacct', 'cpu', 'memory', 'pids'] as const) {
    const d = dirOf(c);
    if (d) dirs[c] = d;
  }
  return readV1Stats(dirs);
}
