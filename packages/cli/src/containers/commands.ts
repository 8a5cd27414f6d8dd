import { readFile } from 'node:fs/promises';
import {
  BerthError,
  Code,
  type ContainerStatus,
  errors,
  type ListContainersRequest,
  TaskApi,
} from '@berth/api';
import { client as clientOf } from '@berth/kit/client';
import { subscribeEvents } from '@berth/kit/events';
import type { Command } from '../command.js';
import type { CliContext } from '../context.js';
import { exitWatcher, logPathOf, namespaceOf, tasks } from './api.js';
import { followLog, printLog, printSink } from './cri-log.js';
import { commandText, humanDuration, statusText, table } from './format.js';

/** Runs `fn` for each named container, printing errors and returning 1 if any failed (as docker). */
export async function each(
  refs: string[],
  ctx: CliContext,
  what: string,
  fn: (ref: string) => Promise<string | undefined>,
): Promise<number> {
  if (refs.length === 0) throw errors.invalid(`${what}: at least one container is required`);
  let code = 0;
  for (const ref of refs) {
    try {
      const line = await fn(ref);
      if (line !== undefined) ctx.out.write(`${line}\n`);
    } catch (err) {
      if (!(err instanceof BerthError)) throw err;
      ctx.err.write(`berth: ${err.message}\n`);
      code = 1;
    }
  }
  return code;
}

/** `ps`. */
export async function psCommand(
  all: boolean,
  quiet: boolean,
  filters: string[],
  ctx: CliContext,
): Promise<number> {
  const client = await tasks(ctx);
  const { containers } = await client['list-containers'](psFilters(all, filters));
  if (quiet) {
    for (const i of containers) ctx.out.write(`${i.container.id.slice(0, 12)}\n`);
    return 0;
  }
  const rows = [['CONTAINER ID', 'IMAGE', 'COMMAND', 'CREATED', 'STATUS', 'NAMES']];
  const now = Date.now();
  for (const i of containers) {
    rows.push([
      i.container.id.slice(0, 12),
      i.container.image.name,
      commandText(i),
      `${humanDuration(now - Date.parse(i.container.createdAt))} ago`,
      statusText(i, now),
      i.container.name,
    ]);
  }
  ctx.out.write(table(rows));
  return 0;
}

const STATUS_ALIASES: Record<string, ContainerStatus> = {
  created: 'created',
  running: 'running',
  paused: 'paused',
  exited: 'stopped',
  stopped: 'stopped',
  unknown: 'unknown',
};

/** docker's `ps --filter` (label=K[=V], status=S, name=N) as a list request; -a unless status is given. */
export function psFilters(all: boolean, filters: string[]): ListContainersRequest {
  const req: ListContainersRequest = {};
  const labels: Record<string, string> = {};
  const status: ContainerStatus[] = [];
  for (const f of filters) {
    const eq = f.indexOf('=');
    const key = eq < 0 ? f : f.slice(0, eq);
    const value = eq < 0 ? '' : f.slice(eq + 1);
    if (key === 'label') {
      const e2 = value.indexOf('=');
      labels[e2 < 0 ? value : value.slice(0, e2)] = e2 < 0 ? '' : value.slice(e2 + 1);
    } else if (key === 'status') {
      const s = STATUS_ALIASES[value];
      if (!s)
        throw errors.invalid(
          `invalid status filter "${value}": one of ${Object.keys(STATUS_ALIASES).join(', ')}`,
        );
      status.push(s);
    } else if (key === 'name') req.name = value;
    else throw errors.invalid(`invalid filter "${f}": use label=, status= or name=`);
  }
  if (Object.keys(labels).length) req.labels = labels;
  if (status.length) req.status = status;
  else if (!all) req.status = ['running', 'paused'];
  return req;
}

/** `logs [-f] [--tail N] [--timestamps]`. */
export async function logsCommand(
  ref: string,
  opts: { follow: boolean; tail?: string; timestamps: boolean },
  ctx: CliContext,
): Promise<number> {
  const client = await tasks(ctx);
  const info = await client['get-container']({ id: ref });
  let tail: number | undefined;
  if (opts.tail !== undefined && opts.tail !== 'all') {
    tail = Number(opts.tail);
    if (!Number.isInteger(tail) || tail < 0) throw errors.invalid(`invalid --tail value "${opts.tail}"`);
  }
  const path = logPathOf(ctx, info);
  const sink = printSink(ctx.out, ctx.err, opts.timestamps);
  if (!opts.follow || (info.status !== 'running' && info.status !== 'paused')) {
    await printLog(path, sink, tail);
    return 0;
  }
  const watcher = await exitWatcher(ctx, info.container.id);
  try {
    watcher.check();
    const offset = await printLog(path, sink, tail);
    await followLog(path, offset, sink, watcher.exited);
  } finally {
    watcher.close();
  }
  return 0;
}

/** `stop [-t N]`: the stop signal, then SIGKILL after the grace period. */
export async function stopOne(
  ref: string,
  seconds: number,
  ctx: CliContext,
  namespace: string = namespaceOf(),
): Promise<string> {
  const client = clientOf(await ctx.nats(), TaskApi, { namespace });
  const info = await client['get-container']({ id: ref });
  if (info.status !== 'running' && info.status !== 'paused' && info.status !== 'created') return ref;
  if (!info.task) return ref;
  const id = info.container.id;
  const w = await exitWatcher(ctx, id, undefined, namespace);
  try {
    w.check();
    const killQuiet = (signal: string, all: boolean) =>
      client.kill({ id, signal, all }).catch((err: unknown) => {
        if (err instanceof BerthError && err.code === Code.FAILED_PRECONDITION) return;
        throw err;
      });
    if (info.status === 'created') await killQuiet('SIGKILL', true);
    else {
      // A stop signal the kernel has no such thing as (an image's StopSignal, an old record) must
      // not keep the container running: it is stopped with SIGKILL, as after the grace period.
      await killQuiet(info.container.stopSignal, false).catch(async (err: unknown) => {
        if (!(err instanceof BerthError) || err.code !== Code.INVALID_ARGUMENT) throw err;
        ctx.err.write(`${ref}: stop signal ${info.container.stopSignal}: ${err.message}; sending SIGKILL\n`);
        await killQuiet('SIGKILL', true);
      });
    }
    let timer: NodeJS.Timeout | undefined;
    const grace = new Promise<'timeout'>((r) => {
      timer = setTimeout(() => r('timeout'), seconds * 1000);
    });
    const first = await Promise.race([w.exited, grace]);
    clearTimeout(timer);
    if (first === 'timeout') {
      await killQuiet('SIGKILL', true);
      await w.exited;
    }
  } finally {
    w.close();
  }
  return ref;
}

/** `top`: the container's processes, read from /proc (the container runs on this node). */
export async function topCommand(ref: string, ctx: CliContext): Promise<number> {
  const client = await tasks(ctx);
  const { pids } = await client.pids({ id: ref });
  const rows = [['UID', 'PID', 'PPID', 'CMD']];
  for (const pid of pids) {
    const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
    const cmd = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    const field = (k: string) => new RegExp(`^${k}:\\s*(\\S+)`, 'm').exec(status)?.[1] ?? '?';
    rows.push([field('Uid'), String(pid), field('PPid'), cmd.split('\0').filter(Boolean).join(' ')]);
  }
  ctx.out.write(table(rows));
  return 0;
}

/** `events`: prints every event until interrupted. */
export async function eventsCommand(ctx: CliContext): Promise<number> {
  const nc = await ctx.nats();
  const ns = namespaceOf();
  const all = process.env.BERTH_EVENTS_ALL_NAMESPACES === '1';
  const sub = subscribeEvents(nc, '>', (env) => {
    if (!all && env.namespace !== ns) return;
    ctx.out.write(`${env.timestamp} ${env.topic} ${JSON.stringify(env.event)}\n`);
  });
  await nc.flush();
  await new Promise<void>((resolve) => {
    const stop = () => resolve();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    void nc.closed().then(stop);
  });
  sub.unsubscribe();
  return 0;
}

export type { Command };
