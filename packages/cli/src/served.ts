/**
 * Commands the `berth up` supervisor runs for the `berth` launcher (bin/berth.js), as dockerd runs
 * every docker command: the launcher sends the command line and its environment on the
 * supervisor's control socket (mode 0600: its owner only) and prints what comes back. The supervisor
 * has the code loaded and compiled and one NATS connection open, so such a command costs the
 * launcher's Node start and a round trip instead of loading the CLI (`berth ps` ~180 -> ~80 ms on
 * an idle node, docs/benchmarks.md). Only read-only listings are served; anything the served run
 * cannot do exactly as the launcher's own run would is refused, and the launcher then runs the
 * command itself.
 */
import { Writable } from 'node:stream';
import { loadConfig } from '@berth/kit/config';
import { hostLayout } from '@berth/kit/layout';
import { connectNats } from '@berth/kit/nats';
import type { NatsConnection } from 'nats';
import { failureOf, runCommandLine } from './cli.js';
import { cliNatsTls } from './context.js';
import { splitGlobalOptions } from './global-options.js';
import type { CommandRunner, ServedLine, ServedRequest } from './served-protocol.js';

export type { ServedLine, ServedRequest } from './served-protocol.js';

/** The command words served: listings that change nothing, so a refused or lost run can be redone. */
export const SERVED_COMMANDS: readonly string[] = ['ps', 'images'];

/** Runs served commands one at a time over one NATS connection, for the supervisor on `socket`. */
export class CommandServer implements CommandRunner {
  private queue: Promise<void> = Promise.resolve();
  private shared: { url: string; nc: Promise<NatsConnection> } | undefined;

  constructor(private readonly socket: string) {}

  /**
   * Serves one request, after the ones before it (a command's spans go to the one span sink of
   * the process): `send` gets its lines, the last being `refused` or `exit`.
   */
  serve(req: ServedRequest, send: (line: ServedLine) => void): Promise<void> {
    const run = this.queue.then(() => this.runOne(req, send));
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** Closes the shared NATS connection. */
  async close(): Promise<void> {
    const s = this.shared;
    this.shared = undefined;
    if (s) await s.nc.then((nc) => nc.close()).catch(() => undefined);
  }

  private async runOne(req: ServedRequest, send: (line: ServedLine) => void): Promise<void> {
    const why = this.refusal(req);
    if (why) {
      send({ type: 'refused', reason: why });
      return;
    }
    send({ type: 'accepted' });
    const io = {
      env: { ...req.env },
      out: lineStream('out', send),
      err: lineStream('err', send),
      sharedNats: (url: string) => this.nats(url),
      served: true,
    };
    let code: number;
    try {
      code = await runCommandLine(req.argv, io);
    } catch (err) {
      const f = failureOf(err);
      io.err.write(f.line);
      code = f.code;
    }
    send({ type: 'exit', code });
  }

  /** Why this request must run in the launcher instead; undefined when it is served. */
  private refusal(req: ServedRequest): string | undefined {
    let word: string | undefined;
    let trace: boolean | undefined;
    try {
      const split = splitGlobalOptions(req.argv);
      word = split.rest[0];
      trace = split.globals.trace;
    } catch {
      return 'bad global options';
    }
    if (word === undefined || !SERVED_COMMANDS.includes(word)) return `"${word ?? ''}" is not served`;
    // The trace id is printed by the launcher's own run, which makes the trace.
    if (trace === true || req.env.BERTH_TRACE === '1') return 'traced';
    let config: ReturnType<typeof loadConfig>;
    try {
      config = loadConfig(req.env);
    } catch {
      return 'config does not load';
    }
    // The launcher found this socket through its own config: another stack's CLI is not ours.
    if (hostLayout(config).run.supervisorSocket !== this.socket) return 'another run root';
    // TLS files and credentials files are read by the process that connects: the launcher's.
    if (cliNatsTls(config).tls || (config.natsUrl && config.natsCreds)) return 'NATS with TLS or creds';
    return undefined;
  }

  /** The shared connection to `url`: made on first use, made again after it closed. */
  private nats(url: string): Promise<NatsConnection> {
    const s = this.shared;
    if (s?.url === url) {
      return s.nc.then(
        (nc) => (nc.isClosed() ? this.connect(url) : nc),
        () => this.connect(url),
      );
    }
    if (s) void s.nc.then((nc) => nc.close()).catch(() => undefined);
    return this.connect(url);
  }

  private connect(url: string): Promise<NatsConnection> {
    // As the CLI's own: no waiting for a server that is down, no reconnecting (a closed one is
    // replaced by the next command).
    const nc = connectNats({
      url,
      name: 'berth-cli',
      extra: { waitOnFirstConnect: false, maxReconnectAttempts: 0 },
    });
    this.shared = { url, nc };
    return nc;
  }
}

/** A stream whose writes become `out` or `err` lines, as the command's stdout or stderr. */
function lineStream(type: 'out' | 'err', send: (line: ServedLine) => void): NodeJS.WriteStream {
  const w = new Writable({
    decodeStrings: false,
    write(chunk: string | Buffer, _enc, done) {
      send({ type, data: typeof chunk === 'string' ? chunk : chunk.toString('utf8') });
      done();
    },
  });
  // Served output goes to the launcher's stdout, which the served command cannot see: as a pipe.
  return Object.assign(w, { isTTY: false }) as unknown as NodeJS.WriteStream;
}
