import { readFile } from 'node:fs';
import { promisify } from 'node:util';
import {
  BerthError,
  Code,
  type ContainerStatus,
  type ContainerSummary,
  errors,
  type ListContainersRequest,
  summarizeContainer,
} from '@berth/api';
import { noResponders } from '@berth/kit/client';
import { subscribeEvents } from '@berth/kit/events';
import { collectAll } from '@berth/kit/paging';
import type { Command } from '../command.js';
import type { CliContext } from '../context.js';
import { nodeFlag, onOtherNode } from '../nodes.js';
import { exitWatcher, logPathOf, type TaskClient, tasks } from './api.js';
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

/** Which nodes `ps` lists: this one (default), a named one, or every node. */
export type NodeScope = { node: string } | { allNodes: true };

/** `ps`: the containers of this node, of `--node NAME`, or of `--all-nodes`, with their NODE. */
export async function psCommand(
  all: boolean,
  quiet: boolean,
  filters: string[],
  ctx: CliContext,
  nodes: NodeScope = { node: ctx.config.nodeId },
): Promise<number> {
  const client = await tasks(ctx);
  const req = psFilters(all, filters);
  if ('node' in nodes) req.node = nodeFlag(ctx.config.nodeId, nodes.node);
  const containers = await listSummaries(client, req);
  if (quiet) {
    for (const i of containers) ctx.out.write(`${i.container.id.slice(0, 12)}\n`);
    return 0;
  }
  const rows = [['CONTAINER ID', 'IMAGE', 'COMMAND', 'CREATED', 'STATUS', 'NODE', 'NAMES']];
  const now = Date.now();
  for (const i of containers) {
    rows.push([
      i.container.id.slice(0, 12),
      i.container.image.name,
      commandText(i.container.command),
      `${humanDuration(now - Date.parse(i.container.createdAt))} ago`,
      statusText(i, now),
      i.container.node,
      i.container.name,
    ]);
  }
  ctx.out.write(table(rows));
  return 0;
}

/**
 * The containers a list request matches, summarized, page after page (one reply holds a bounded
 * page, never every container of the namespace). Summaries: a listing's reply schema is built by
 * every `ps`, and whole records' cost ~5 ms. A task-service older than this CLI has no
 * `list-container-summaries` (no responder for it): its whole records are summarized here.
 */
export async function listSummaries(
  client: TaskClient,
  req: ListContainersRequest,
): Promise<ContainerSummary[]> {
  try {
    return await collectAll(client['list-container-summaries'], req, 'containers');
  } catch (err) {
    if (!noResponders(err)) throw err;
    try {
      return (await collectAll(client['list-containers'], req, 'containers')).map(summarizeContainer);
    } catch (older) {
      // Nothing answers either: the task-service is down, which the first error says.
      throw noResponders(older) ? err : older;
    }
  }
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
  const sink = printSink(ctx.out, ctx.err, opts.timestamps);
  if (onOtherNode(ctx.config.nodeId, info.container.node)) {
    const live = info.status === 'running' || info.status === 'paused';
    // Loaded only for a container elsewhere: `ps` and local logs do not pay for the stream.
    const { remoteLog } = await import('./remote.js');
    await remoteLog(
      ctx,
      { node: info.container.node, id: info.container.id, what: `container "${ref}"` },
      { follow: opts.follow && live, interruptible: true, ...(tail !== undefined ? { tail } : {}) },
      sink,
    );
    return 0;
  }
  const path = logPathOf(ctx, info);
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

// node:fs's readFile, not node:fs/promises': that module costs `berth ps` (this module) ~5 ms to load.
const readText = (file: string) => promisify(readFile)(file, 'utf8');

/** `top`: the container's processes, read from /proc (the container runs on this node). */
export async function topCommand(ref: string, ctx: CliContext): Promise<number> {
  const client = await tasks(ctx);
  const info = await client['get-container']({ id: ref });
  // Host pids of another node mean nothing in this node's /proc.
  if (onOtherNode(ctx.config.nodeId, info.container.node)) {
    throw new BerthError(
      Code.UNIMPLEMENTED,
      `top of container "${ref}": it runs on node "${info.container.node}", and top reads /proc on this node; run it there`,
    );
  }
  const { pids } = await client.pids({ id: info.container.id });
  const rows = [['UID', 'PID', 'PPID', 'CMD']];
  for (const pid of pids) {
    const status = await readText(`/proc/${pid}/status`).catch(() => '');
    const cmd = await readText(`/proc/${pid}/cmdline`).catch(() => '');
    const field = (k: string) => new RegExp(`^${k}:\\s*(\\S+)`, 'm').exec(status)?.[1] ?? '?';
    rows.push([field('Uid'), String(pid), field('PPid'), cmd.split('\0').filter(Boolean).join(' ')]);
  }
  ctx.out.write(table(rows));
  return 0;
}

/** `events`: prints every event until interrupted. */
export async function eventsCommand(ctx: CliContext): Promise<number> {
  const nc = await ctx.nats();
  const ns = ctx.namespace;
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
