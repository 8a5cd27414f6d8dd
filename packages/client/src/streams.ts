import { BerthError, Code, ShimApi, type ShimTaskRef, StreamChannel } from '@berth/api';
import { call } from '@berth/kit/client';
import { criLogLines, type NatsStream } from '@berth/kit/stream';
import { callStream } from '@berth/kit/stream-call';
import type { LogLine } from './logs.js';
import type { Scope } from './scope.js';

/** A container's process on its node, for the shim's streamed operations. */
export interface NodeProcess {
  node: string;
  id: string;
  execId?: string;
}

function refOf(scope: Scope, p: NodeProcess): ShimTaskRef {
  return { namespace: scope.namespace, id: p.id, ...(p.execId ? { execId: p.execId } : {}) };
}

function describe(p: NodeProcess): string {
  const what = p.execId ? `exec "${p.execId}" of container "${p.id}"` : `container "${p.id}"`;
  return `${what} on node "${p.node}"`;
}

/** An UNAVAILABLE from the shim of the process's node, naming that node. */
function nodeDown(p: NodeProcess, err: unknown): unknown {
  if (
    err instanceof BerthError &&
    err.code === Code.UNAVAILABLE &&
    !err.message.includes(`node "${p.node}"`)
  ) {
    return new BerthError(Code.UNAVAILABLE, `node "${p.node}" does not answer: ${err.message}`, {
      cause: err,
    });
  }
  return err;
}

/**
 * The lines of a process's CRI log, streamed by the shim of its node over NATS (flow-controlled:
 * the shim reads the file only as fast as this generator is consumed). With `follow`, lines keep
 * coming until the process's exit is persisted. Stopping the iteration or aborting `signal`
 * closes the stream.
 */
export async function* nodeLog(
  scope: Scope,
  p: NodeProcess,
  o: { follow?: boolean; tail?: number; signal?: AbortSignal } = {},
): AsyncGenerator<LogLine> {
  let s: NatsStream;
  try {
    s = await callStream(
      scope.nc,
      ShimApi,
      'logs',
      { ...refOf(scope, p), follow: o.follow ?? false, ...(o.tail !== undefined ? { tail: o.tail } : {}) },
      { node: p.node, namespace: scope.namespace, what: `logs of ${describe(p)}` },
    );
  } catch (err) {
    throw nodeDown(p, err);
  }
  const stop = () => s.close();
  o.signal?.addEventListener('abort', stop, { once: true });
  try {
    yield* criLogLines(s.chunks());
  } finally {
    o.signal?.removeEventListener('abort', stop);
    s.close();
  }
}

/** One piece of what an attached process wrote. */
export interface OutputChunk {
  stream: 'stdout' | 'stderr';
  data: Uint8Array;
}

/**
 * A live connection to a process's stdio through the shim of its node (see {@link Tasks.attach}).
 * Iterate `output` to read what the process writes (until it exits or {@link Attachment.close});
 * a consumer that reads slowly slows the stream down rather than losing output.
 */
export class Attachment {
  /** @internal Use {@link Tasks.attach}. */
  constructor(
    private readonly scope: Scope,
    private readonly p: NodeProcess,
    private readonly s: NatsStream,
  ) {}

  /** What the process writes, in order, until its output ends (it exited) or the stream fails. */
  async *output(): AsyncGenerator<OutputChunk> {
    for await (const c of this.s.chunks()) {
      if (c.channel === StreamChannel.stdout) yield { stream: 'stdout', data: c.data };
      else if (c.channel === StreamChannel.stderr) yield { stream: 'stderr', data: c.data };
    }
  }

  /** Sends bytes to the process's stdin (attach with `stdin: true`); waits while the stream is full. */
  write(data: Uint8Array | string): Promise<void> {
    return this.s.write(typeof data === 'string' ? Buffer.from(data) : data, StreamChannel.stdin);
  }

  /** Ends the process's stdin after what was written (as a closed pipe: `cat` then exits). */
  closeStdin(): Promise<void> {
    return this.s.end();
  }

  /** Sets the size of the process's terminal (a process created with a TTY). */
  async resize(rows: number, cols: number): Promise<void> {
    await call(
      this.scope.nc,
      ShimApi,
      'resize',
      { ...refOf(this.scope, this.p), rows, cols },
      { node: this.p.node, namespace: this.scope.namespace },
    ).catch((err: unknown) => {
      throw nodeDown(this.p, err);
    });
  }

  /** Leaves the process running and ends this connection (the process's stdin closes if it was created with stdinOnce). */
  close(): void {
    this.s.close();
  }
}

/** Opens an attachment to a process (see {@link Tasks.attach}). */
export async function attachTo(
  scope: Scope,
  p: NodeProcess,
  o: { stdin?: boolean } = {},
): Promise<Attachment> {
  try {
    const s = await callStream(
      scope.nc,
      ShimApi,
      'attach',
      { ...refOf(scope, p), stdin: o.stdin ?? false },
      { node: p.node, namespace: scope.namespace, what: `attach to ${describe(p)}` },
    );
    return new Attachment(scope, p, s);
  } catch (err) {
    throw nodeDown(p, err);
  }
}
