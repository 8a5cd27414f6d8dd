/**
 * Commands the `berth up` supervisor runs for the `berth` launcher (bin/berth.js), as dockerd runs
 * every docker command: the launcher sends the command line and its environment on the
 * supervisor's control socket (mode 0600: its owner only) and prints what comes back. The supervisor
 * has the code loaded and compiled and one NATS connection open, so such a command costs the
 * launcher's Node start and a round trip instead of loading the CLI (`berth ps -a` 195 -> 104 ms on
 * an idle node, docs/benchmarks.md). Only read-only listings are served; anything the served run
 * cannot do exactly as the launcher's own run would is refused, and the launcher then runs the
 * command itself.
 */
import { statSync } from 'node:fs';
import { isAbsolute } from 'node:path';
import { Writable } from 'node:stream';
import { type Config, DEFAULT_CONFIG_FILE, loadConfig } from '@berth/kit/config';
import { hostLayout } from '@berth/kit/layout';
import { connectNats } from '@berth/kit/nats';
import { otlpTracesUrl } from '@berth/kit/tracing';
import type { NatsConnection } from 'nats';
import { failureOf, runCommandLine } from './cli.js';
import { cliNatsTls } from './context.js';
import { splitGlobalOptions } from './global-options.js';
import type { CommandRunner, ServedLine, ServedRequest } from './served-protocol.js';

export type { ServedLine, ServedRequest } from './served-protocol.js';

/** The command words served: listings that change nothing, so a refused or lost run can be redone. */
export const SERVED_COMMANDS: readonly string[] = ['ps', 'images'];

/** The largest config file a served command reads (the launcher's own run reads any size). */
const CONFIG_MAX_BYTES = 1024 * 1024;

/** The most characters of output one line carries: a big table goes in pieces, not one line. */
const LINE_DATA_MAX = 64 * 1024;

/**
 * Runs served commands over one NATS connection, one at a time: a command's spans go to the one
 * span sink of the process. A request that comes while one runs is refused at once (`busy`), and
 * its launcher runs it itself: nothing queues in the supervisor, and no launcher waits for another.
 */
export class CommandServer implements CommandRunner {
  private busy = false;
  private closed = false;
  private shared: { url: string; nc: Promise<NatsConnection> } | undefined;

  constructor(private readonly socket: string) {}

  /** Serves one request: `send` gets its lines, the last being `refused` or `exit`. */
  async serve(req: ServedRequest, send: (line: ServedLine) => void): Promise<void> {
    if (this.busy) {
      send({ type: 'refused', reason: 'busy' });
      return;
    }
    this.busy = true;
    try {
      await this.runOne(req, send);
    } finally {
      this.busy = false;
    }
  }

  /** Closes the shared NATS connection; every later request is refused. */
  async close(): Promise<void> {
    this.closed = true;
    const s = this.shared;
    this.shared = undefined;
    if (s) await s.nc.then((nc) => nc.close()).catch(() => undefined);
  }

  private async runOne(req: ServedRequest, send: (line: ServedLine) => void): Promise<void> {
    const checked = this.check(req);
    if (typeof checked === 'string') {
      send({ type: 'refused', reason: checked });
      return;
    }
    send({ type: 'accepted' });
    const io = {
      env: { ...req.env },
      out: lineStream('out', send),
      err: lineStream('err', send),
      config: checked,
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

  /**
   * The config the request's command runs with, or why the launcher must run it instead. The
   * config file is read here once, and only a regular file of bounded size named by an absolute
   * path: a fifo, a device or a path relative to the launcher's directory is the launcher's to read.
   */
  private check(req: ServedRequest): Config | string {
    if (this.closed) return 'stopping';
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
    // The launcher found this socket through its own config: another stack's CLI is not ours.
    if (hostLayout(config).run.supervisorSocket !== this.socket) return 'another run root';
    // TLS files and credentials files are read by the process that connects: the launcher's.
    if (cliNatsTls(config).tls || (config.natsUrl && config.natsCreds)) return 'NATS with TLS or creds';
    // The launcher's extra CA certificates are trusted by its own TLS connections, not by this
    // process's: a configured NATS (which may want TLS) or an OTLP collector are the launcher's.
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

/** A stream whose writes become `out` or `err` lines, as the command's stdout or stderr. */
function lineStream(type: 'out' | 'err', send: (line: ServedLine) => void): NodeJS.WriteStream {
  const w = new Writable({
    decodeStrings: false,
    write(chunk: string | Buffer, _enc, done) {
      const text = typeof chunk === 'string' ? chunk : chunk.toString('utf8');
      for (let at = 0; at < text.length; ) {
        let end = Math.min(at + LINE_DATA_MAX, text.length);
        // Never between the two halves of a surrogate pair: each piece must be valid on its own.
        if (end < text.length && /[\uD800-\uDBFF]/.test(text.charAt(end - 1))) end--;
        send({ type, data: text.slice(at, end) });
        at = end;
      }
      done();
    },
  });
  // Served output goes to the launcher's stdout, which the served command cannot see: as a pipe.
  return Object.assign(w, { isTTY: false }) as unknown as NodeJS.WriteStream;
}
