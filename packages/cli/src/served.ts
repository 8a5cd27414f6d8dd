/**
 * Commands the `berth up` supervisor runs for the `berth` command (native/berth.c), as dockerd
 * runs every docker command: the client sends the command line, its environment and directory on
 * the supervisor's control socket (mode 0600: its owner only) and relays what comes back. The
 * supervisor has the code loaded and compiled and one NATS connection open, so such a command
 * costs a process start and a round trip instead of starting Node and loading the CLI
 * (docs/benchmarks.md). Served are the listings, help and version, and `run` without a terminal
 * or stdin; anything the served run cannot do exactly as the client's own run would is refused,
 * and the client then runs the command itself (bin/berth.js).
 */
import { statSync } from 'node:fs';
import { isAbsolute } from 'node:path';
import { Writable } from 'node:stream';
import { type Config, DEFAULT_CONFIG_FILE, loadConfig } from '@berth/kit/config';
import { hostLayout } from '@berth/kit/layout';
import { connectNats } from '@berth/kit/nats';
import { otlpTracesUrl } from '@berth/kit/tracing';
import type { NatsConnection } from 'nats';
import { failureOf, parseCommandLine, runCommandLine } from './cli.js';
import { cliNatsTls } from './context.js';
import type { CommandRunner, ServedLine, ServedRequest, ServedSignals } from './served-protocol.js';

export type { ServedLine, ServedRequest } from './served-protocol.js';

/**
 * The command words served (native/berth.c asks only for these, and `berth` alone, its help and
 * version): the listings, and `run` unless it needs the terminal (-i, -t).
 */
export const SERVED_COMMANDS: readonly string[] = ['ps', 'images', 'run'];

/** Served commands running at once; one more is refused, and its client runs it itself. */
const MAX_RUNNING = 16;

/** The largest config file a served command reads (the launcher's own run reads any size). */
const CONFIG_MAX_BYTES = 1024 * 1024;

/**
 * Runs served commands over one NATS connection, several at once (each has its own span sink, see
 * the kit's SPAN_SINK_KEY). Past MAX_RUNNING a request is refused at once (`busy`), and its client
 * runs it itself: nothing queues in the supervisor.
 */
export class CommandServer implements CommandRunner {
  private running = 0;
  private closed = false;
  private shared: { url: string; nc: Promise<NatsConnection> } | undefined;

  constructor(private readonly socket: string) {}

  /** Serves one request: `send` gets its frames, the last being `refused` or `exit`. */
  async serve(req: ServedRequest, send: (line: ServedLine) => void, signals: ServedSignals): Promise<void> {
    if (this.running >= MAX_RUNNING) {
      send({ type: 'refused', reason: 'busy' });
      return;
    }
    this.running++;
    try {
      await this.runOne(req, send, signals);
    } finally {
      this.running--;
    }
  }

  /** Closes the shared NATS connection; every later request is refused. */
  async close(): Promise<void> {
    this.closed = true;
    const s = this.shared;
    this.shared = undefined;
    if (s) await s.nc.then((nc) => nc.close()).catch(() => undefined);
  }

  private async runOne(
    req: ServedRequest,
    send: (line: ServedLine) => void,
    signals: ServedSignals,
  ): Promise<void> {
    const checked = this.check(req);
    if (typeof checked === 'string') {
      send({ type: 'refused', reason: checked });
      return;
    }
    send({ type: 'accepted' });
    const io = {
      env: { ...req.env },
      out: frameStream('out', send),
      err: frameStream('err', send),
      config: checked,
      sharedNats: (url: string) => this.nats(url),
      served: true,
      cwd: req.cwd,
      onSignal: (fn: (sig: NodeJS.Signals) => void) => signals.on(fn),
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

  /**
   * The config the request's command runs with, or why the launcher must run it instead. The
   * config file is read here once, and only a regular file of bounded size named by an absolute
   * path: a fifo, a device or a path relative to the launcher's directory is the launcher's to read.
   */
  private check(req: ServedRequest): Config | string {
    if (this.closed) return 'stopping';
    let line: ReturnType<typeof parseCommandLine>;
    try {
      line = parseCommandLine(req.argv);
    } catch {
      // A usage error is the client's to print: its own run finds it at once.
      return 'usage error';
    }
    if (line.kind === 'command') {
      const word = line.cmd.name;
      if (!SERVED_COMMANDS.includes(word)) return `"${word}" is not served`;
      // The trace id is printed by the client's own run, which makes the trace.
      if (line.trace || req.env.BERTH_TRACE === '1') return 'traced';
      // A terminal or stdin is the client's: only its own run can hand them to the container.
      if (line.values.interactive === true || line.values.tty === true) return 'needs the terminal';
    }
    const file = req.env.BERTH_CONFIG ?? DEFAULT_CONFIG_FILE;
    if (!isAbsolute(file)) return 'config path relative to the launcher';
    const st = statSync(file, { throwIfNoEntry: false });
    if (st && (!st.isFile() || st.size > CONFIG_MAX_BYTES)) return 'config is no small regular file';
    let config: Config;
    try {
      config = loadConfig(req.env);
    } catch {
      return 'config does not load';
    }
    // The client found this socket through its own config: another stack's CLI is not ours.
    if (hostLayout(config).run.supervisorSocket !== this.socket) return 'another run root';
    // TLS files and credentials files are read by the process that connects: the client's.
    if (cliNatsTls(config).tls || (config.natsUrl && config.natsCreds)) return 'NATS with TLS or creds';
    // The client's extra CA certificates are trusted by its own TLS connections, not by this
    // process's: a configured NATS (which may want TLS) or an OTLP collector are the client's.
    const extraCa = req.env.BERTH_EXTRA_CA_CERTS || req.env.NODE_EXTRA_CA_CERTS;
    if (extraCa && (config.natsUrl || otlpTracesUrl(req.env))) return 'extra CA certificates';
    return config;
  }

  /** The shared connection to `url`: made on first use, made again after it closed. */
  private nats(url: string): Promise<NatsConnection> {
    if (this.closed) return Promise.reject(new Error('the supervisor is stopping'));
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

/** A stream whose writes become `out` or `err` frames, as the command's stdout or stderr. */
function frameStream(type: 'out' | 'err', send: (line: ServedLine) => void): NodeJS.WriteStream {
  const w = new Writable({
    decodeStrings: false,
    write(chunk: string | Buffer, _enc, done) {
      if (chunk.length > 0) send({ type, data: chunk });
      done();
    },
  });
  // Served output goes to the client's stdout, which the served command cannot see: as a pipe.
  return Object.assign(w, { isTTY: false }) as unknown as NodeJS.WriteStream;
}
