import {
  BerthError,
  Code,
  type ShimApi,
  type ShimAttachRequest,
  type ShimLogsRequest,
  type ShimTaskRef,
  StreamChannel,
  type StreamEnd,
} from '@berth/api';
import type { Handlers } from '@berth/kit';
import { type NatsStream, openStream } from '@berth/kit/stream';
import type { NatsConnection } from 'nats';
import { type AttachSession, attach } from '../attach.js';
import type { ShimAgent } from '../domain/agent.js';
import { logFileOf, sendLogFile } from '../domain/log-stream.js';

/** How the shim's streams talk NATS. */
export interface StreamSettings {
  nc: NatsConnection;
  /** Data frames a reader may leave unacknowledged before the stream pauses (stdin); default 16. */
  window?: number;
  /** Heartbeat interval of each stream (tests shorten it); default the kit's. */
  heartbeatMs?: number;
}

/**
 * The streamed operations of the shim, `logs` and `attach`: a reader on any node gets a
 * container's log and stdio from this node over a flow-controlled NATS stream (@berth/kit's
 * stream), so nobody needs the log file or the monitor's socket on their own disk.
 */
export class ShimStreams {
  private readonly live = new Set<NatsStream>();

  constructor(
    private readonly agent: ShimAgent,
    private readonly o: StreamSettings,
  ) {}

  /** The handlers of `logs` and `attach`. */
  handlers(): Pick<Handlers<typeof ShimApi>, 'logs' | 'attach'> {
    return { logs: (req) => this.logs(req), attach: (req) => this.attach(req) };
  }

  /** Ends every open stream with UNAVAILABLE (the shim is stopping); readers learn at once. */
  close(): void {
    for (const s of this.live) {
      s.fail(new BerthError(Code.UNAVAILABLE, `the shim on node "${this.agent.host.node}" is shutting down`));
    }
  }

  private what(ref: ShimTaskRef): string {
    const p = ref.execId ? `exec "${ref.execId}" of container "${ref.id}"` : `container "${ref.id}"`;
    return `${p} on node "${this.agent.host.node}"`;
  }

  private accept(reader: StreamEnd, what: string): NatsStream {
    const s = openStream(this.o.nc, {
      what,
      ...(this.o.window ? { window: this.o.window } : {}),
      ...(this.o.heartbeatMs ? { heartbeatMs: this.o.heartbeatMs } : {}),
    });
    s.connect(reader);
    this.live.add(s);
    s.signal.addEventListener('abort', () => this.live.delete(s), { once: true });
    return s;
  }

  /** Sends the log from the start (or its last `tail` lines); with `follow`, until the exit. */
  async logs(req: ShimLogsRequest): Promise<StreamEnd> {
    const ref: ShimTaskRef = {
      namespace: req.namespace,
      id: req.id,
      ...(req.execId ? { execId: req.execId } : {}),
    };
    const path = await logFileOf(this.agent.host, ref);
    const rec = await this.agent.host.store.get(ref.namespace, ref.id, ref.execId);
    const s = this.accept(req.stream, `logs of ${this.what(ref)}`);
    // The exit is persisted after conmon flushed the output: reading on until then misses nothing.
    const until = req.follow && rec && rec.status !== 'stopped' ? this.agent.wait(ref, s.signal) : undefined;
    until?.catch(() => undefined);
    void sendLogFile(path, {
      ...(req.tail !== undefined ? { tail: req.tail } : {}),
      ...(until ? { until } : {}),
      signal: s.signal,
      write: (lines) => s.write(lines, StreamChannel.log),
    })
      .then(() => s.end())
      .catch((err: unknown) => s.fail(err))
      .finally(() => s.close());
    return s.local;
  }

  /** Connects to the process's monitor and relays its stdio until it exits or the reader leaves. */
  async attach(req: ShimAttachRequest): Promise<StreamEnd> {
    const ref: ShimTaskRef = {
      namespace: req.namespace,
      id: req.id,
      ...(req.execId ? { execId: req.execId } : {}),
    };
    const host = this.agent.host;
    const rec = await host.mustGet(ref);
    const st = host.toState(rec);
    if (!st.attachPath) {
      throw new BerthError(
        Code.FAILED_PRECONDITION,
        `${this.what(ref)} is not running: nothing to attach to`,
      );
    }
    if (req.stdin && !rec.stdin) {
      throw new BerthError(Code.FAILED_PRECONDITION, `${this.what(ref)} was created without stdin (-i)`);
    }
    const s = this.accept(req.stream, `attach to ${this.what(ref)}`);
    let session: AttachSession;
    try {
      session = attach(st.attachPath, {
        stdout: (b) => s.write(b, StreamChannel.stdout),
        stderr: (b) => s.write(b, StreamChannel.stderr),
      });
    } catch (err) {
      s.close();
      throw err;
    }
    s.signal.addEventListener('abort', () => session.detach(), { once: true });
    if (req.stdin) void pumpStdin(s, session);
    void session.done
      .then(
        () => s.end(),
        (err: unknown) => s.fail(err),
      )
      .finally(() => s.close());
    return s.local;
  }
}

/**
 * Writes the reader's stdin frames to the process in order; the reader ending its direction
 * closes the process's stdin. A stream that fails or is closed detaches (see `attach`).
 */
async function pumpStdin(s: NatsStream, session: AttachSession): Promise<void> {
  try {
    for await (const c of s.chunks()) {
      if (c.channel === StreamChannel.stdin) await session.write(Buffer.from(c.data));
    }
    session.closeStdin();
  } catch {
    // the stream ended without an end of input: the abort listener detaches
  }
}
