import { randomBytes } from 'node:crypto';
import {
  AUTO_REMOVE_LABEL,
  BerthError,
  Code,
  type Container,
  type CreateContainerRequest,
  type ExitStatus,
  errors,
  type Task,
} from '@berth/api';
import type { CommandArgs } from '../command.js';
import type { CliContext } from '../context.js';
import { image } from '../images/api.js';
import { nodeError, nodeFlag } from '../nodes.js';
import { ensureImage, exitWatcher, logPathOf, pullMissing, type TaskClient, tasks } from './api.js';
import { followLog, printSink } from './cri-log.js';
import { type InteractiveSession, interactive } from './interactive.js';
import { toCreateRequest } from './options.js';
import { onOtherNode, type RemoteProcess, remoteInteractive, remoteLog } from './remote.js';

/**
 * This terminal to a process: through its monitor's socket when it runs on this node, else
 * through its node's shim over NATS.
 */
async function session(
  ctx: CliContext,
  p: RemoteProcess,
  local: { attachPath?: string; ctlPath?: string },
  o: { tty: boolean; stdin: boolean; closeStdinAtEof: boolean },
): Promise<InteractiveSession> {
  return onOtherNode(ctx, p.node) ? remoteInteractive(ctx, p, o) : interactive(local, o);
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
  else if (logPath) await followLog(logPath, 0, sink, exited);
}

/** docker's exit status when the container's command cannot be found. */
const EXIT_NOT_FOUND = 127;

/** Forwards SIGINT/SIGTERM to the container while the CLI waits on it (docker's sig-proxy). */
function proxySignals(send: (sig: NodeJS.Signals) => void): () => void {
  const handlers = (['SIGINT', 'SIGTERM', 'SIGHUP'] as const).map((sig) => {
    const h = () => send(sig);
    process.on(sig, h);
    return [sig, h] as const;
  });
  return () => {
    for (const [sig, h] of handlers) process.off(sig, h);
  };
}

/** Creates the container (pulling its image if needed); `berth create`. */
export async function createContainer(args: CommandArgs, ctx: CliContext): Promise<string> {
  const node = nodeFlag(ctx.config.nodeId, args.values.node);
  const req = toCreateRequest(args, node);
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
  const req = toCreateRequest(args, node);
  // Detached, nobody waits here to remove it: the task-service does once the task exits.
  if (detach && v.rm) req.labels = { ...req.labels, [AUTO_REMOVE_LABEL]: 'true' };
  const client = await tasks(ctx);
  let container: Container | undefined;
  try {
    container = await createIfImagePresent(ctx, client, req, node);
  } catch (err) {
    return commandNotFound(nodeError(node, err), ctx);
  }
  if (!container) {
    await pullMissing(ctx, req.image, node);
    try {
      container = await client['create-container'](req);
    } catch (err) {
      return commandNotFound(nodeError(node, err), ctx);
    }
  }
  const id = container.id;
  const proc: RemoteProcess = { node, id, what: `container "${id.slice(0, 12)}"` };
  const watcher = detach ? undefined : await exitWatcher(ctx, id);
  let io: InteractiveSession | undefined;
  let task: Task;
  // Attach before start: the monitor does not replay what the process wrote before. Without a
  // session the task is started with its create, one round trip (and task-service read) fewer.
  const attach = watcher !== undefined && (req.tty === true || req.stdin === true);
  try {
    task = await client.create({ id, ...(attach ? {} : { start: true }) });
    if (attach) {
      io = await session(ctx, proc, task, {
        tty: req.tty ?? false,
        stdin: req.stdin ?? false,
        closeStdinAtEof: true,
      });
      // A failed session surfaces where it is awaited; until then it must not count as unhandled.
      io.done.catch(() => undefined);
      await io.ready;
      await client.start({ id });
    }
  } catch (err) {
    watcher?.close();
    await client['delete-container']({ id, force: true }).catch(() => undefined);
    return commandNotFound(nodeError(node, err), ctx);
  }
  if (!watcher) {
    ctx.out.write(`${id}\n`);
    return 0;
  }
  const unproxy = proxySignals((signal) => void client.kill({ id, signal }).catch(() => undefined));
  let exit: ExitStatus;
  try {
    // Listening since before create: the exit event cannot have gone by, so the first state
    // check (for a lost event) waits its interval instead of loading the services at start.
    watcher.check({ now: false });
    if (io) await io.done;
    // The log path from the replies of create-container and create (what get-container returns).
    else await followOutput(ctx, proc, logPathOf(ctx, { container, task }), watcher.exited);
    exit = await watcher.exited;
  } finally {
    unproxy();
    watcher.close();
  }
  // The record goes before the reply; the stopped task, files, network and snapshot are freed by
  // the task-service after it (a durable collection record: a crash leaves it to the reconcile),
  // as containerd's CRI leaves snapshot removal to its collector. The CLI does not wait for runc
  // delete, unmount and CNI DEL (~100 ms); a failed run above still removes in the foreground.
  if (v.rm) await whileUnavailable(() => client['delete-container']({ id, force: true, background: true }));
  return exit.exitCode;
}

/**
 * create-container with the node's image check beside it instead of before it (one round trip
 * less when the image is there, as it mostly is). Undefined when the node lacks the image: the
 * create, made without it, failed and undid itself, and the caller pulls it (as `docker run`).
 */
async function createIfImagePresent(
  ctx: CliContext,
  client: TaskClient,
  req: CreateContainerRequest,
  node: string,
): Promise<Container | undefined> {
  const creating = client['create-container'](req);
  // Settled below on every path; until then its failure must not count as unhandled.
  creating.catch(() => undefined);
  // Any answer but NOT_FOUND leaves the verdict to the create (which reads the same record).
  const missing = await image(ctx, 'get', { name: req.image }, node).then(
    () => false,
    (err: unknown) => err instanceof BerthError && err.code === Code.NOT_FOUND,
  );
  if (!missing) return creating;
  // A create that found it all the same (pulled meanwhile by another client) stands.
  return creating.catch(() => undefined);
}

/**
 * Retries while the task-service is unavailable (restarting under its supervisor), up to 30 s:
 * the container already exited, and `--rm` should not be lost to a restart.
 */
async function whileUnavailable<T>(fn: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + 30_000;
  let delay = 50;
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      if (!(err instanceof BerthError) || err.code !== Code.UNAVAILABLE || Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 1000);
    }
  }
}

/** docker run's 127 for a command missing in the image; other errors propagate. */
function commandNotFound(err: unknown, ctx: CliContext): number {
  if (err instanceof BerthError && /executable file not found|no such file or directory/i.test(err.message)) {
    ctx.err.write(`berth: ${err.message}\n`);
    return EXIT_NOT_FOUND;
  }
  throw err;
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
