import { randomBytes } from 'node:crypto';
import { AUTO_REMOVE_LABEL, BerthError, Code, type ExitStatus, errors } from '@berth/api';
import type { CommandArgs } from '../command.js';
import type { CliContext } from '../context.js';
import { ensureImage, exitWatcher, logPathOf, tasks } from './api.js';
import { followLog, printSink } from './cri-log.js';
import { type InteractiveSession, interactive } from './interactive.js';
import { toCreateRequest } from './options.js';

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
  const req = toCreateRequest(args, ctx.config.nodeId);
  await ensureImage(ctx, req.image);
  const c = await (await tasks(ctx))['create-container'](req);
  return c.id;
}

/**
 * `berth run`: create, start, then (without -d) stream the container's output from its CRI log
 * and return its exit code. A failure to create or start leaves nothing behind.
 */
export async function runContainer(args: CommandArgs, ctx: CliContext): Promise<number> {
  const v = args.values;
  const detach = v.detach === true;
  const req = toCreateRequest(args, ctx.config.nodeId);
  // Detached, nobody waits here to remove it: the task-service does once the task exits.
  if (detach && v.rm) req.labels = { ...req.labels, [AUTO_REMOVE_LABEL]: 'true' };
  await ensureImage(ctx, req.image);
  const client = await tasks(ctx);
  let id: string;
  try {
    id = (await client['create-container'](req)).id;
  } catch (err) {
    return commandNotFound(err, ctx);
  }
  const watcher = detach ? undefined : await exitWatcher(ctx, id);
  let session: InteractiveSession | undefined;
  try {
    const task = await client.create({ id });
    // Attach before start: the monitor does not replay what the process wrote before.
    if (watcher && (req.tty || req.stdin)) {
      session = interactive(task, {
        tty: req.tty ?? false,
        stdin: req.stdin ?? false,
        closeStdinAtEof: true,
      });
      // A failed session surfaces where it is awaited; until then it must not count as unhandled.
      session.done.catch(() => undefined);
      await session.ready;
    }
    await client.start({ id });
  } catch (err) {
    watcher?.close();
    await client['delete-container']({ id, force: true }).catch(() => undefined);
    return commandNotFound(err, ctx);
  }
  if (!watcher) {
    ctx.out.write(`${id}\n`);
    return 0;
  }
  const unproxy = proxySignals((signal) => void client.kill({ id, signal }).catch(() => undefined));
  let exit: ExitStatus;
  try {
    watcher.check();
    if (session) await session.done;
    else {
      const info = await client['get-container']({ id });
      await followLog(logPathOf(ctx, info), 0, printSink(ctx.out, ctx.err, false), watcher.exited);
    }
    exit = await watcher.exited;
  } finally {
    unproxy();
    watcher.close();
  }
  if (v.rm) await whileUnavailable(() => client['delete-container']({ id, force: true }));
  return exit.exitCode;
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
    const session =
      watcher && (tty || stdin) ? interactive(st, { tty, stdin, closeStdinAtEof: true }) : undefined;
    session?.done.catch(() => undefined);
    await session?.ready;
    await client.start({ id, execId });
    if (!watcher) return 0;
    watcher.check();
    if (session) await session.done;
    else if (st.logPath) await followLog(st.logPath, 0, printSink(ctx.out, ctx.err, false), watcher.exited);
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
    await interactive(st, {
      tty: info.container.io.terminal,
      stdin: info.container.io.stdin,
      closeStdinAtEof: false,
    }).done;
    return (await watcher.exited).exitCode;
  } finally {
    watcher.close();
  }
}
