/**
 * The invariants checked after the chaos: first on the live stack (no container lost, exits and
 * logs right, berth's list equal to runc's), then after removing every container (nothing left
 * behind: mounts, bundles, cgroups, network namespaces, IP leases, ingests). A check that cannot
 * be made says so (held: 'not checked') instead of passing.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { eventSubject } from '@berth/api/subjects';
import { keys } from '@berth/kit';
import { Redis } from 'ioredis';
import type { NatsConnection } from 'nats';
import { type ContainerStack, until } from '../e2e/containers-stack.js';
import type { Batch, WorkloadRecord } from './workload.js';

/** What the invariants need of a stack: its CLI and its directories (a test stack or `berth up`). */
export type ChaosTarget = Pick<ContainerStack, 'berth' | 'root' | 'stateRoot' | 'runRoot' | 'cni'>;
/** A node checked clean at the end: its Redis tells what the task-service has left to finish. */
export type CleanTarget = ChaosTarget & { redisUrl: string };

/** One invariant's verdict, with a figure or the first violations. */
export interface Check {
  name: string;
  held: boolean | 'not checked';
  detail: string;
}

/** Container as `berth inspect` prints it (the fields used here). */
interface Inspected {
  container: { id: string; name: string };
  status: string;
  task?: { status: string; exitCode?: number; reason?: string };
}

const show = (list: string[]) =>
  list.length ? `: ${list.slice(0, 5).join('; ')}${list.length > 5 ? ' ...' : ''}` : '';
/** A check named `name` that held when nothing is `bad`; its detail is `figure` and the first few bad. */
export const verdict = (name: string, bad: string[], figure: string): Check => ({
  name,
  held: bad.length === 0,
  detail: `${figure}${show(bad)}`,
});

/** Operations counted per name, ok and failed (the workload's and the pods'). */
type OpCounts = Record<string, { ok: number; failed: number }>;

/** The report's last lines: the CRI's first errors, the operations' counts, each check's outcome. */
export function outcomeLines(
  workload: { ops: OpCounts },
  pods: { ops: OpCounts; errors: Record<string, string> },
  checks: Check[],
): string[] {
  return [
    `CRI errors (first of each): ${JSON.stringify(pods.errors)}`,
    `operations: ${Object.entries({ ...workload.ops, ...pods.ops })
      .map(([op, c]) => `${op} ${c.ok} ok/${c.failed} failed`)
      .join(', ')}`,
    ...checks.map(
      (c) =>
        `${c.held === true ? 'HELD   ' : c.held === false ? 'BROKEN ' : 'NOT CHECKED '} ${c.name}: ${c.detail}`,
    ),
  ];
}

/** Names in `berth ps -a` (last column). */
async function psNames(s: ChaosTarget): Promise<string[]> {
  const r = await s.berth(['ps', '-a']);
  if (r.code !== 0) throw new Error(`berth ps -a failed: ${r.stderr}`);
  return r.stdout
    .trim()
    .split('\n')
    .slice(1)
    .map((l) => l.trim().split(/\s+/).pop() ?? '')
    .filter(Boolean);
}

async function inspectAll(s: ChaosTarget, names: string[]): Promise<Inspected[]> {
  if (names.length === 0) return [];
  const r = await s.berth(['inspect', ...names]);
  if (r.code !== 0) throw new Error(`berth inspect failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as Inspected[];
}

/** runc's containers under the stack's state root: id -> status, over every namespace or just `only`. */
export function runcList(stateRoot: string, only?: string): Map<string, string> {
  const out = new Map<string, string>();
  const base = join(stateRoot, 'runc');
  if (!existsSync(base)) return out;
  for (const ns of readdirSync(base)) {
    if (only !== undefined && ns !== only) continue;
    const raw = execFileSync('runc', ['--root', join(base, ns), 'list', '-f', 'json']).toString();
    for (const c of (JSON.parse(raw || '[]') ?? []) as { id: string; status: string }[])
      out.set(c.id, c.status);
  }
  return out;
}

/** The exit codes the tasks.exit events announce per container (main tasks), as checkLive reads them. */
export interface ExitRecorder {
  exits: Map<string, number[]>;
  /** Stops recording. */
  stop(): void;
}

/** Records every container exit announced on NATS from now on (an exec's exit is left out). */
export function recordExits(nc: NatsConnection): ExitRecorder {
  const exits = new Map<string, number[]>();
  const sub = nc.subscribe(eventSubject('tasks.exit'), {
    callback: (_err, msg) => {
      const e = (msg.json() as { event?: { id?: string; execId?: string; exitCode?: number } }).event;
      if (!e?.id || e.execId) return;
      exits.set(e.id, [...(exits.get(e.id) ?? []), e.exitCode ?? -1]);
    },
  });
  return { exits, stop: () => sub.unsubscribe() };
}

/** When the state disk was full (ms after the chaos began): a disk-fill fault's span. */
export interface FillWindow {
  atMs: number;
  endMs: number;
}

/** A batch container's output may have met a full disk: it ran (from its run to a second after the
 * answer, its lines take milliseconds) while the disk was full. */
function ranDuring(b: Batch, f: FillWindow): boolean {
  return b.atMs <= f.endMs && b.answeredMs + 1000 >= f.atMs;
}

/**
 * Whether `got` is the lines `line-1`..`line-total` with at most one run of them missing: writes
 * fail only while the disk is full, and the container prints its lines within milliseconds, so a
 * fill can cut one stretch out of its log, never scatter holes, reorder or repeat lines.
 */
function oneGap(got: string[], total: number): boolean {
  let gaps = 0;
  let last = 0;
  for (const l of got) {
    const k = /^line-\d+$/.test(l) ? Number(l.slice(5)) : Number.NaN;
    if (!(k > last && k <= total)) return false;
    if (k > last + 1) gaps++;
    last = k;
  }
  if (last < total) gaps++;
  // A hole in the middle and one at the end are two: only one stretch may be missing.
  return gaps <= 1;
}

/**
 * Checks the live stack. `exits` counts the tasks.exit events seen per container id (main task).
 * Waits (bounded) for every acknowledged batch container to be recorded as exited first.
 */
export async function checkLive(
  s: ChaosTarget,
  rec: WorkloadRecord,
  exits: Map<string, number[]>,
  fills: FillWindow[] = [],
): Promise<Check[]> {
  const checks: Check[] = [];
  const acked = rec.batches.filter((b) => b.acked && !rec.removed.has(b.name));
  const wanted = [...acked.map((b) => b.name), ...rec.longs.keys(), ...rec.stopFailed];
  const names = new Set(await psNames(s));
  const lost = wanted.filter((n) => !names.has(n));
  checks.push(
    verdict(
      'no container lost',
      lost,
      `${wanted.length - lost.length}/${wanted.length} acknowledged containers present`,
    ),
  );
  const gone = [...rec.removed].filter((n) => names.has(n));
  checks.push(verdict('removed containers stay removed', gone, `${rec.removed.size} removed`));

  const longs = [...rec.longs.keys()].filter((n) => names.has(n));
  const stopped = (await inspectAll(s, longs))
    .filter((i) => i.status !== 'running')
    .map((i) => `${i.container.name} ${i.status}`);
  checks.push(
    verdict(
      'running containers keep running',
      stopped,
      `${longs.length - stopped.length}/${longs.length} still running`,
    ),
  );

  const present = acked.filter((b) => names.has(b.name));
  let info: Inspected[] = [];
  const settled = await until(
    'every batch container to be recorded as exited',
    async () => {
      info = await inspectAll(
        s,
        present.map((b) => b.name),
      );
      return info.every((i) => i.task?.status === 'stopped');
    },
    90_000,
  ).catch(() => false);
  const byName = new Map(info.map((i) => [i.container.name, i]));
  const wrong: string[] = [];
  for (const b of present) {
    const got = byName.get(b.name)?.task;
    if (got?.status !== 'stopped' || got.exitCode !== b.code)
      wrong.push(
        `${b.name} (run at ${b.atMs} ms) wanted exit ${b.code}, got ${got?.status ?? 'no task'} ${got?.exitCode ?? ''} ${got?.reason ?? ''}`.trimEnd(),
      );
  }
  checks.push(
    verdict(
      'every exit recorded with the right code',
      wrong,
      `${present.length - wrong.length}/${present.length} exits right${settled ? '' : ' (not all settled in 90 s)'}`,
    ),
  );

  const twice: string[] = [];
  let seen = 0;
  for (const b of present) {
    const codes = exits.get(byName.get(b.name)?.container.id ?? b.id) ?? [];
    if (codes.length > 0) seen++;
    if (codes.length > 1) twice.push(`${b.name} announced ${codes.length} times (${codes.join(',')})`);
  }
  checks.push(
    verdict(
      'every exit announced at most once',
      twice,
      `${seen}/${present.length} exit events seen (a NATS outage may drop some; the store is the record)`,
    ),
  );

  const logBad: string[] = [];
  let duringFill = 0;
  let lostInFill = 0;
  for (const b of present) {
    const r = await s.berth(['logs', b.name]);
    const got = r.stdout.trimEnd().split('\n').filter(Boolean);
    const fill = fills.find((f) => ranDuring(b, f));
    if (r.code === 0 && fill) {
      // A write while the state disk is full cannot land (ENOSPC), whoever writes the log:
      // such a log may miss lines, but what it has must be the container's lines, in order, once.
      duringFill++;
      lostInFill += b.lines - got.length;
      if (!oneGap(got, b.lines))
        logBad.push(
          `${b.name} (run at ${b.atMs} ms, during the disk fill at ${fill.atMs}-${fill.endMs} ms): ${got.length}/${b.lines} lines, not the container's lines with one gap`,
        );
      continue;
    }
    const want = Array.from({ length: b.lines }, (_, i) => `line-${i + 1}`);
    if (r.code !== 0 || got.join('\n') !== want.join('\n')) {
      logBad.push(
        `${b.name} (run at ${b.atMs} ms): ${got.length}/${b.lines} lines${r.code !== 0 ? ` (logs exit ${r.code}: ${r.stderr.trim()})` : ''}`,
      );
    }
  }
  const lines = present.reduce((a, b) => a + b.lines, 0);
  checks.push(
    verdict(
      'no log line lost',
      logBad,
      `${present.length - logBad.length}/${present.length} logs complete (${lines} lines)${duringFill ? `; ${duringFill} ran during a disk fill (${lostInFill} lines not written, the rest in order)` : ''}`,
    ),
  );

  checks.push(await psEqualsRunc(s));
  checks.push(
    verdict(
      'no exec answered wrongly without an error',
      rec.execWrong,
      `${rec.ops.exec?.ok ?? 0} execs right`,
    ),
  );
  return checks;
}

/** The task of a container as `berth inspect` shows it (status, exit code, reason), in a namespace. */
export async function taskOf(s: ChaosTarget, ns: string, id: string): Promise<string> {
  const r = await s.berth(['-n', ns, 'inspect', id]);
  if (r.code !== 0) return `inspect failed: ${r.stderr.trim()}`;
  const t = (JSON.parse(r.stdout) as Inspected[])[0]?.task;
  return t ? `${t.status} ${t.exitCode ?? ''} ${t.reason ?? ''}`.trim() : 'none';
}

/**
 * `berth ps -a` against runc's list: the same running set, and no runc container berth does not
 * know. Read until they agree, within UNFINISHED_WAIT_MS: a task whose create a killed
 * task-service never recorded runs until that replica's container lock expires and the reconcile
 * deletes it, and an exit no replica heard is recorded by the next reconcile pass.
 */
async function psEqualsRunc(s: ChaosTarget): Promise<Check> {
  const deadline = Date.now() + UNFINISHED_WAIT_MS;
  for (;;) {
    const { bad, detail } = await compareWithRunc(s);
    if (bad.length === 0 || Date.now() >= deadline)
      return verdict('berth ps -a equal to runc list', bad, detail);
    await sleep(500);
  }
}

async function compareWithRunc(s: ChaosTarget): Promise<{ bad: string[]; detail: string }> {
  const all = await inspectAll(s, await psNames(s));
  // `berth ps` shows the default namespace; CRI's (k8s.io) are checked by pod-invariants.ts.
  const runc = runcList(s.stateRoot, 'default');
  const berthIds = new Set(all.map((i) => i.container.id));
  const berthRunning = new Set(all.filter((i) => i.task?.status === 'running').map((i) => i.container.id));
  const bad: string[] = [];
  for (const [id, st] of runc) {
    if (!berthIds.has(id)) bad.push(`runc has ${id.slice(0, 12)} (${st}) unknown to berth`);
    else if ((st === 'running') !== berthRunning.has(id))
      bad.push(`${id.slice(0, 12)} runc ${st}, berth ${berthRunning.has(id) ? 'running' : 'not running'}`);
  }
  for (const id of berthRunning)
    if (runc.get(id) !== 'running')
      bad.push(`berth runs ${id.slice(0, 12)}, runc: ${runc.get(id) ?? 'absent'}`);
  return { bad, detail: `${all.length} containers, ${berthRunning.size} running, runc ${runc.size}` };
}

const entries = (dir: string) => (existsSync(dir) ? readdirSync(dir) : []);
/** Subdirectories only (a cgroup directory also holds its control files). */
const dirs = (dir: string) =>
  existsSync(dir)
    ? readdirSync(dir, { withFileTypes: true })
        .filter((d) => d.isDirectory())
        .map((d) => d.name)
    : [];

/** The container lock's ttl (task-service containers/manager.ts) and two reconcile passes. */
export const UNFINISHED_WAIT_MS = 30_000 + 2 * 1000 + 3000;

/**
 * What the task-service has begun and not finished, from its Redis: creation intents (undone by
 * the reconcile once their lock is free) and removed containers whose node resources are still to
 * be freed, as `creating <ns>/<id>` and `collecting <ns>/<id>`.
 */
async function unfinished(redis: Redis): Promise<string[]> {
  const out: string[] = [];
  for (const [what, key] of [
    ['creating', keys.containersCreating],
    ['collecting', keys.containersCollecting],
  ] as const) {
    for (const ns of ['default', 'k8s.io'])
      for (const id of await redis.hkeys(key(ns))) out.push(`${what} ${ns}/${id}`);
  }
  return out;
}

/**
 * Removes every container, then checks that nothing is left behind. `ids` are the container ids
 * seen during the run: cgroups are looked up by id, since /berth/<ns> is shared by other stacks.
 */
export async function checkClean(s: CleanTarget, ids: Set<string>): Promise<Check[]> {
  const left = await psNames(s);
  if (left.length) {
    const r = await s.berth(['rm', '-f', ...left]);
    if (r.code !== 0) throw new Error(`berth rm -f failed: ${r.stderr}`);
  }
  // A creation whose task-service was killed is undone by the reconcile once the dead replica's
  // container lock expires (its ttl, 30 s), and a background removal is collected on the next
  // pass: what those still hold (a bridge network, a snapshot) is no orphan until they had their turn.
  const redis = new Redis(s.redisUrl, { maxRetriesPerRequest: 1 });
  let pending: string[];
  try {
    pending = await until(
      'unfinished creations and collections to end',
      async () => (await unfinished(redis)).length === 0,
      UNFINISHED_WAIT_MS,
    ).then(
      () => [],
      () => unfinished(redis),
    );
  } finally {
    redis.disconnect();
  }
  // Pod networks whose teardown a fault failed are collected by the gateway's next pass (every
  // second in the chaos stacks): the leftover checks judge once that had its chance.
  const leases = () => entries(s.cni.leaseDir).filter((f) => /^\d+\.\d+\.\d+\.\d+$/.test(f));
  await until(
    'pod networks to be collected',
    () => entries(join(s.runRoot, 'netns')).length === 0 && leases().length === 0,
    15_000,
  ).catch(() => false);
  const checks: Check[] = [];
  checks.push(
    verdict('no creation or removal left unfinished', pending, 'creation intents and collections in Redis'),
  );
  checks.push(verdict('ps -a empty after rm -f', await psNames(s), `${left.length} removed`));
  checks.push(verdict('no runc container left', [...runcList(s.stateRoot).keys()], 'runc list'));
  const mounts = readFileSync('/proc/self/mounts', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[1] ?? '')
    .filter((m) => m.startsWith(`${s.root}/`) && m !== s.stateRoot); // the state root's own tmpfs is the test's
  checks.push(verdict('no orphan mount', mounts, `mounts under the stack root: ${mounts.length}`));
  const tasks = join(s.stateRoot, 'tasks');
  const bundles = entries(tasks).flatMap((ns) => entries(join(tasks, ns)).map((id) => `${ns}/${id}`));
  checks.push(verdict('no orphan bundle', bundles, `bundles: ${bundles.length}`));
  const cgroups: string[] = [];
  for (const ctl of dirs('/sys/fs/cgroup')) {
    const base = join('/sys/fs/cgroup', ctl, 'berth');
    for (const ns of dirs(base))
      for (const id of dirs(join(base, ns))) if (ids.has(id)) cgroups.push(`${ctl}/berth/${ns}/${id}`);
  }
  checks.push(
    verdict('no orphan cgroup', cgroups, `looked for ${ids.size} container ids in every controller`),
  );
  const netns = entries(join(s.runRoot, 'netns'));
  checks.push(verdict('no orphan network namespace', netns, `netns files: ${netns.length}`));
  const leased = leases();
  checks.push(verdict('no orphan IP allocation', leased, `leases: ${leased.length}`));
  const ingest = entries(join(s.stateRoot, 'content', 'ingest'));
  checks.push(verdict('no orphan ingest', ingest, `ingests: ${ingest.length}`));
  return checks;
}
