import { randomBytes } from 'node:crypto';
import {
  AUTO_REMOVE_LABEL,
  BerthError,
  Code,
  type CreateContainerRequest,
  type ExitStatus,
  errors,
  type RunContainerReply,
} from '@berth/api';
import type { ExitWaiter } from '@berth/kit/exit-waiter';
import type { CommandArgs } from '../command.js';
import type { CliContext } from '../context.js';
import { nodeError, nodeFlag } from '../nodes.js';
import { earlyExits, ensureImage, exitWatcher, logPathOf, type TaskClient, tasks } from './api.js';
import { followLog, printSink } from './cri-log.js';
import type { InteractiveSession } from './interactive.js';
import { toCreateRequest } from './options.js';
import { onOtherNode, type RemoteProcess, remoteInteractive, remoteLog } from './remote.js';
import { commandNotFound, createPulling, EXIT_NOT_FOUND, whileUnavailable } from './run-calls.js';

/**
 * This terminal to a process: through its monitor's socket when it runs on this node, else
 * through its node's shim over NATS.
 */
async function session(
  ctx: CliContext,
  p: RemoteProcess,
  local: { attachPath?: string; ctlPath?: string; pid?: number },
  o: { tty: boolean; stdin: boolean; closeStdinAtEof: boolean },
): Promise<InteractiveSession> {
  if (onOtherNode(ctx, p.node)) return remoteInteractive(ctx, p, o);
  // Loaded on first use: the monitor's attach (the shim's addon, node:fs/promises, node:module)
  // serves -t/-i, exec and attach sessions only, and loading it cost every `berth run` ~3 ms.
  const { interactive } = await import('./interactive.js');
  return interactive(local, o);
}

/** Prints a process's output from its CRI log until `exited`; from its node's shim when remote. */
async function followOutput(
  ctx: CliContext,
  p: RemoteProcess,
  logPath: string | undefined,
  exited: Promise<unknown>,
): Promise<void> {
  const sink = printSink(ctx.out, ctx.err, false);
  if (onOtherNode(ctx, p.node)) await remoteLog(ctx, p, { follow: true }, sink);
  // A served run's client that hung up reads no more: the following stops at once.
  else if (logPath) await followLog(logPath, 0, sink, exited, ctx.gone);
}

/** The exit code of a served run whose client hung up (nobody reads it): a SIGHUP's. */
const EXIT_GONE = 129;

/** Creates the container (pulling its image if needed); `berth create`. */
export async function createContainer(args: CommandArgs, ctx: CliContext): Promise<string> {
  const node = nodeFlag(ctx.config.nodeId, args.values.node);
  const req = toCreateRequest(args, node, ctx.caller);
  await ensureImage(ctx, req.image, node);
  const c = await (await tasks(ctx))['create-container'](req).catch((err: unknown) => {
    throw nodeError(node, err);
  });
  return c.id;
}

/**
 * `berth run`: create, start, then (without -d) stream the container's output from its CRI log
 * and return its exit code. A failure to create or start leaves nothing behind.
 */
export async function runContainer(args: CommandArgs, ctx: CliContext): Promise<number> {
  const v = args.values;
  const detach = v.detach === true;
  const node = nodeFlag(ctx.config.nodeId, v.node);
  const req = toCreateRequest(args, node, ctx.caller);
  // Detached, nobody waits here to remove it: the task-service does once the task exits.
  if (detach && v.rm) req.labels = { ...req.labels, [AUTO_REMOVE_LABEL]: 'true' };
  const client = await tasks(ctx);
  if (!detach && (req.tty === true || req.stdin === true))
    return runAttached(ctx, client, req, node, v.rm === true);
  // Without a session one call makes the container and its task and starts it: the task-service
  // goes from the container's record to the task's create at once, and the CLI makes one round
  // trip instead of two. Its exit can come before the reply that names it: listen first.
  const early = detach ? undefined : await earlyExits(ctx);
  // A served run's client that hung up before the container was watched (Ctrl-C during a pull or
  // the create) asked for nothing more: the container, once made, goes again.
  let hungUp = false;
  void ctx.gone.then(() => {
    hungUp = true;
  });
  let made: RunContainerReply | undefined;
  try {
    // Checked at each try (before the pull, after it): nothing is made for a client gone already.
    made = await createPulling(ctx, req, node, () =>
      hungUp
        ? Promise.reject(new BerthError(Code.CANCELLED, 'the berth client hung up'))
        : client['run-container'](req),
    );
  } finally {
    if (!made || (hungUp && early)) early?.close();
  }
  if (!made) return EXIT_NOT_FOUND;
  const { container, task } = made;
  const id = container.id;
  if (!early) {
    ctx.out.write(`${id}\n`);
    return 0;
  }
  if (hungUp) {
    await client['delete-container']({ id, force: true, background: true }).catch(() => undefined);
    return EXIT_GONE;
  }
  // The id's own waiter (which asks the task's state should the event be lost) subscribes while
  // the early listener still listens; an exit that listener saw, as a short command's mostly is by
  // the reply, does not wait for the waiter's subscription and flush.
  const watcher = exitWatcher(ctx, id);
  const exited = Promise.race([early.of(id), watcher.then((w) => w.exited)]);
  void watcher.finally(() => early.close()).catch(() => undefined);
  const proc: RemoteProcess = { node, id, what: `container "${id.slice(0, 12)}"` };
  return finishRun(client, { ctx, proc, rm: v.rm === true, watcher, exited }, () =>
    // The log path from the reply (create-container's container and create's task); the following
    // ends with the exit or with the user.
    followOutput(ctx, proc, logPathOf(ctx, { container, task }), exited),
  );
}

/**
 * `berth run -t`/`-i`: the session attaches between the task's create and its start (the monitor
 * does not replay what the process wrote before), so create-container, create and start are
 * three calls, with the exit waiter listening since before the task exists.
 */
async function runAttached(
  ctx: CliContext,
  client: TaskClient,
  req: CreateContainerRequest,
  node: string,
  rm: boolean,
): Promise<number> {
  const container = await createPulling(ctx, req, node, () => client['create-container'](req));
  if (!container) return EXIT_NOT_FOUND;
  const id = container.id;
  const proc: RemoteProcess = { node, id, what: `container "${id.slice(0, 12)}"` };
  const watcher = await exitWatcher(ctx, id);
  let io: InteractiveSession;
  try {
    const task = await client.create({ id });
    io = await session(ctx, proc, task, {
      tty: req.tty ?? false,
      stdin: req.stdin ?? false,
      closeStdinAtEof: true,
    });
    // A failed session surfaces where it is awaited; until then it must not count as unhandled.
    io.done.catch(() => undefined);
    await io.ready;
    await client.start({ id });
  } catch (err) {
    watcher.close();
    await client['delete-container']({ id, force: true }).catch(() => undefined);
    return commandNotFound(nodeError(node, err), ctx);
  }
  return finishRun(
    client,
    { ctx, proc, rm, watcher: Promise.resolve(watcher), exited: watcher.exited },
    () => io.done,
  );
}

/**
 * Waits for a started container's exit while `follow` shows its output, forwarding signals to
 * it; with `rm` removes it. The record goes before the reply; the stopped task, files, network
 * and snapshot are freed by the task-service after it (a durable collection record: a crash
 * leaves it to the reconcile), as containerd's CRI leaves snapshot removal to its collector. The
 * CLI does not wait for runc delete, unmount and CNI DEL (~100 ms); a failed run still removes in
 * the foreground (the task-service's run-container, or runAttached).
 */
async function finishRun(
  client: TaskClient,
  o: {
    ctx: CliContext;
    proc: RemoteProcess;
    rm: boolean;
    watcher: Promise<ExitWaiter>;
    exited: Promise<ExitStatus>;
  },
  follow: () => Promise<unknown>,
): Promise<number> {
  const id = o.proc.id;
  // Forwards SIGINT, SIGTERM and SIGHUP to the container while the CLI waits on it (docker's sig-proxy).
  const unproxy = o.ctx.onSignal((signal) => void client.kill({ id, signal }).catch(() => undefined));
  // Listening since before the task existed: the exit event cannot have gone by, so the first
  // state check (for a lost event) waits its interval instead of loading the services at start.
  // A waiter that could not subscribe fails `exited` unless the exit was heard without it.
  const waiter = o.watcher.then(
    (w) => {
      w.check({ now: false });
      return w;
    },
    () => undefined,
  );
  // Handled here even when `follow` fails first (its error is the one thrown).
  o.exited.catch(() => undefined);
  let exit: ExitStatus | undefined;
  try {
    const ran = (async () => {
      await follow();
      return o.exited;
    })();
    // A served run whose client hung up stops here, as the CLI killed while it waits: the
    // container runs on, unwatched and not removed.
    exit = await Promise.race([ran, o.ctx.gone.then(() => undefined)]);
    if (!exit) ran.catch(() => undefined);
  } finally {
    unproxy();
    void waiter.then((w) => w?.close());
  }
  if (!exit) return EXIT_GONE;
  if (o.rm) await whileUnavailable(() => client['delete-container']({ id, force: true, background: true }));
  return exit.exitCode;
}

/** `berth exec`: runs a process in a running container and returns its exit code. */
export async function execInContainer(args: CommandArgs, ctx: CliContext): Promise<number> {
  const v = args.values;
  const [ref, ...cmd] = args.positionals;
  if (!ref || cmd.length === 0)
    throw errors.invalid('usage: berth exec [OPTIONS] CONTAINER COMMAND [ARG...]');
  const tty = v.tty === true;
  const stdin = v.interactive === true;
  const client = await tasks(ctx);
  const info = await client['get-container']({ id: ref });
  const id = info.container.id;
  const execId = `exec-${randomBytes(6).toString('hex')}`;
  const env = (Array.isArray(v.env) ? v.env : []).map(String);
  const watcher = v.detach ? undefined : await exitWatcher(ctx, id, execId);
  try {
    const st = await client.exec({
      id,
      execId,
      args: cmd,
      ...(env.length ? { env } : {}),
      ...(typeof v.workdir === 'string' ? { cwd: v.workdir } : {}),
      ...(typeof v.user === 'string' ? { user: v.user } : {}),
      tty,
      stdin,
    });
    const proc: RemoteProcess = { node: info.container.node, id, execId, what: `container "${ref}"` };
    const io =
      watcher && (tty || stdin)
        ? await session(ctx, proc, st, { tty, stdin, closeStdinAtEof: true })
        : undefined;
    io?.done.catch(() => undefined);
    await io?.ready;
    await client.start({ id, execId });
    if (!watcher) return 0;
    watcher.check();
    if (io) await io.done;
    else await followOutput(ctx, proc, st.logPath, watcher.exited);
    const exit = await watcher.exited;
    await client.delete({ id, execId }).catch(() => undefined);
    return exit.exitCode;
  } finally {
    watcher?.close();
  }
}

/** `berth attach`: this terminal to a running container's process, until it exits. */
export async function attachContainer(ref: string, ctx: CliContext): Promise<number> {
  const client = await tasks(ctx);
  const info = await client['get-container']({ id: ref });
  if (info.status !== 'running' && info.status !== 'paused') {
    throw errors.precondition(`container "${ref}" is not running`);
  }
  const id = info.container.id;
  const watcher = await exitWatcher(ctx, id);
  try {
    const st = await client.state({ id });
    watcher.check();
    const proc: RemoteProcess = { node: info.container.node, id, what: `container "${ref}"` };
    await (
      await session(ctx, proc, st, {
        tty: info.container.io.terminal,
        stdin: info.container.io.stdin,
        closeStdinAtEof: false,
      })
    ).done;
    return (await watcher.exited).exitCode;
  } finally {
    watcher.close();
  }
}
