/**
 * A container on another node: its log file and its monitor's attach socket are on that node's
 * disk, so the CLI reads them through that node's shim over NATS (ShimApi `logs` and `attach`,
 * flow-controlled streams from @berth/kit): a slow terminal or pipe here slows the stream down,
 * nothing is dropped, and a node that goes away is an error naming it, not a hang.
 */
import { once } from 'node:events';
import { BerthError, Code, ShimApi, type ShimTaskRef, StreamChannel } from '@berth/api';
import { call } from '@berth/kit/client';
import { criLogLines, type NatsStream } from '@berth/kit/stream';
import { callStream } from '@berth/kit/stream-call';
import type { CliContext } from '../context.js';
import { onOtherNode as isOther, nodeError } from '../nodes.js';
import type { LogSink } from './cri-log.js';
import type { InteractiveSession } from './interactive.js';
import { terminalSizer } from './terminal-size.js';

/** True when `node` is not this CLI's node: the container's files are not on this disk. */
export function onOtherNode(ctx: CliContext, node: string): boolean {
  return isOther(ctx.config.nodeId, node);
}

/** A process of a container on some node, as the shim names it. */
export interface RemoteProcess {
  node: string;
  id: string;
  execId?: string;
  /** For messages: `container "web"`. */
  what: string;
}

async function open(
  ctx: CliContext,
  p: RemoteProcess,
  op: 'logs' | 'attach',
  extra: object,
): Promise<NatsStream> {
  const ref: ShimTaskRef = { namespace: ctx.namespace, id: p.id, ...(p.execId ? { execId: p.execId } : {}) };
  const what = `${op === 'logs' ? 'logs of' : 'attach to'} ${p.what} on node "${p.node}"`;
  try {
    return await callStream(
      await ctx.nats(),
      ShimApi,
      op,
      { ...ref, ...extra } as Parameters<typeof callStream<typeof ShimApi, typeof op>>[3],
      { node: p.node, namespace: ref.namespace, what },
    );
  } catch (err) {
    throw nodeError(p.node, err);
  }
}

/** Waits while a stream of this process has a full buffer: the reader's pace sets the stream's. */
async function drain(...outs: NodeJS.WritableStream[]): Promise<void> {
  for (const o of outs) {
    if ((o as NodeJS.WriteStream).writableNeedDrain) await once(o, 'drain');
  }
}

/**
 * Prints a container's (or exec's) log from its node, line by line into `sink`: the last `tail`
 * lines or all, and with `follow` new lines until the process exits. With `interruptible`
 * (`berth logs`), SIGINT/SIGTERM end the stream at once (the shim stops reading) and fail with
 * CANCELLED; `run` and `exec` leave those signals to their own handling (sig-proxy).
 */
export async function remoteLog(
  ctx: CliContext,
  p: RemoteProcess,
  o: { follow: boolean; tail?: number; interruptible?: boolean },
  sink: LogSink,
): Promise<void> {
  const s = await open(ctx, p, 'logs', {
    follow: o.follow,
    ...(o.tail !== undefined ? { tail: o.tail } : {}),
  });
  // A served command's client that hung up reads no more (see CliContext.gone).
  void ctx.gone.then(() => s.close());
  let interrupted = false;
  const stop = () => {
    interrupted = true;
    s.close();
  };
  if (o.interruptible) {
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  }
  try {
    for await (const line of criLogLines(s.chunks())) {
      await sink.write(line);
      // A full stdout pauses reading, and with it the shim (no credit): nothing piles up here.
      await drain(ctx.out, ctx.err);
    }
  } finally {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
    s.close();
  }
  if (interrupted) throw new BerthError(Code.CANCELLED, `${p.what}: logs interrupted`);
}

/**
 * `interactive()` for a process on another node: this terminal's input goes to the process
 * through its shim (paused while the stream has no credit), its output comes back the same way,
 * and with a TTY the terminal is raw and its size (and every SIGWINCH) is sent with `resize`.
 * Start the process only after `ready`. `done` settles when the process's output ends.
 */
export async function remoteInteractive(
  ctx: CliContext,
  p: RemoteProcess,
  o: { tty: boolean; stdin: boolean; closeStdinAtEof: boolean },
): Promise<InteractiveSession> {
  const s = await open(ctx, p, 'attach', { stdin: o.stdin });
  const input = process.stdin;
  const output = process.stdout;
  const cleanups: (() => void)[] = [];
  let ready: Promise<void> = Promise.resolve();
  if (o.tty && output.isTTY) {
    const nc = await ctx.nats();
    const namespace = ctx.namespace;
    const resize = terminalSizer(output, (rows, cols) =>
      call(
        nc,
        ShimApi,
        'resize',
        { namespace, id: p.id, ...(p.execId ? { execId: p.execId } : {}), rows, cols },
        { node: p.node, namespace },
      ),
    );
    ready = resize();
    const onWinch = () => void resize();
    process.on('SIGWINCH', onWinch);
    cleanups.push(() => process.off('SIGWINCH', onWinch));
  }
  if (o.stdin) {
    if (o.tty && input.isTTY) {
      input.setRawMode(true);
      cleanups.push(() => input.setRawMode(false));
    }
    // One chunk at a time: input pauses until the stream took the last one (its credit), so a
    // fast pipe into a slow process never piles up here; bytes keep their order.
    const onData = (b: Buffer) => {
      input.pause();
      s.write(b, StreamChannel.stdin).then(
        () => input.resume(),
        () => undefined,
      );
    };
    const onEnd = () => {
      if (o.closeStdinAtEof) void s.end().catch(() => undefined);
    };
    input.on('data', onData);
    input.on('end', onEnd);
    input.resume();
    cleanups.push(() => {
      input.off('data', onData);
      input.off('end', onEnd);
      input.pause();
    });
  }
  const done = (async () => {
    for await (const c of s.chunks()) {
      if (c.channel === StreamChannel.stderr) process.stderr.write(c.data);
      else if (c.channel === StreamChannel.stdout) output.write(c.data);
      await drain(output, process.stderr);
    }
  })().finally(() => {
    for (const c of cleanups) c();
    s.close();
  });
  return { ready, done };
}
