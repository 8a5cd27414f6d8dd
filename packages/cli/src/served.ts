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
import { realpathSync, statSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import { Writable } from 'node:stream';
import { type Config, DEFAULT_CONFIG_FILE, loadConfig } from '@berth/kit/config';
import { putBackExtraCaCerts } from '@berth/kit/extra-ca';
import { hostLayout } from '@berth/kit/layout';
import { connectNats } from '@berth/kit/nats';
import { otlpTracesUrl } from '@berth/kit/tracing';
import type { NatsConnection } from 'nats';
import { failureOf, parseCommandLine, runCommandLine } from './cli.js';
import { strs } from './containers/options.js';
import { profilePaths } from './containers/security-opts.js';
import { cliNatsTls } from './context.js';
import type { CommandRunner, ServedClient, ServedLine, ServedRequest } from './served-protocol.js';

export type { ServedLine, ServedRequest } from './served-protocol.js';

/**
 * The command words served (native/berth.c asks only for these, and `berth` alone, its help and
 * version): the listings, and `run` unless it needs the terminal (-i, -t).
 */
export const SERVED_COMMANDS: readonly string[] = ['ps', 'images', 'run'];

/** How long a client has to say `go` after it was accepted (it says so at once). */
const CONFIRM_MS = 10_000;

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
  /** NATS connections by URL, with the commands using each: an idle one is kept for the next. */
  private readonly conns = new Map<string, { nc: Promise<NatsConnection>; users: number }>();

  constructor(private readonly socket: string) {}

  /** Serves one request: `send` gets its frames, the last being `refused` or `exit`. */
  async serve(req: ServedRequest, send: (line: ServedLine) => boolean, client: ServedClient): Promise<void> {
    if (this.running >= MAX_RUNNING) {
      send({ type: 'refused', reason: 'busy' });
      return;
    }
    this.running++;
    try {
      await this.runOne(req, send, client);
    } finally {
      this.running--;
    }
  }

  /** Closes the NATS connections; every later request is refused. */
  async close(): Promise<void> {
    this.closed = true;
    const all = [...this.conns.values()];
    this.conns.clear();
    await Promise.all(all.map((c) => c.nc.then((nc) => nc.close()).catch(() => undefined)));
  }

  private async runOne(
    req: ServedRequest,
    send: (line: ServedLine) => boolean,
    client: ServedClient,
  ): Promise<void> {
    const checked = this.check(req);
    if (typeof checked === 'string') {
      send({ type: 'refused', reason: checked });
      return;
    }
    send({ type: 'accepted' });
    // A client that gave up waiting runs the command itself: it must not run here too. One that
    // neither says go nor hangs up (stopped) is given up on, not left holding a slot.
    let timer: NodeJS.Timeout | undefined;
    const confirmed = await Promise.race([
      client.confirmed,
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(false), CONFIRM_MS);
      }),
    ]);
    clearTimeout(timer);
    if (!confirmed) return;
    const used = new Set<string>();
    const env = { ...req.env };
    // As main.ts does for a command run by hand: the variable the client moved aside (see
    // bin/berth) is NODE_EXTRA_CA_CERTS again for what the command reads (`run -e NAME`).
    putBackExtraCaCerts(env);
    const io = {
      env,
      out: frameStream('out', send, client),
      err: frameStream('err', send, client),
      config: checked,
      sharedNats: (url: string) => this.nats(url, used),
      served: true,
      cwd: req.cwd,
      onSignal: (fn: (sig: NodeJS.Signals) => void) => client.onSignal(fn),
      gone: client.gone,
    };
    let code: number;
    try {
      code = await runCommandLine(req.argv, io);
    } catch (err) {
      const f = failureOf(err);
      io.err.write(f.line);
      code = f.code;
    } finally {
      this.release(used);
    }
    // Everything written has gone out before the exit code.
    await Promise.all([ended(io.out), ended(io.err)]);
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
      // Files `run` reads are read here, in the client's directory: only plain files, never one
      // that is this process's (/dev/stdin, /dev/fd/N, /proc/self/...) or blocks (a fifo).
      const files = [...strs(line.values['env-file']), ...profilePaths(strs(line.values['security-opt']))];
      if (files.some((f) => !plainFile(resolve(req.cwd, f)))) return 'reads a file that is not a plain file';
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

  /**
   * The connection to `url` for a command (`used` collects the URLs it took): made on first use,
   * made again after it closed, shared by the commands running at once.
   */
  private nats(url: string, used: Set<string>): Promise<NatsConnection> {
    if (this.closed) return Promise.reject(new Error('the supervisor is stopping'));
    let c = this.conns.get(url);
    if (!c) {
      c = { nc: connect(url), users: 0 };
      this.conns.set(url, c);
    }
    if (!used.has(url)) {
      used.add(url);
      c.users++;
    }
    const entry = c;
    entry.nc = entry.nc.then(
      (nc) => (nc.isClosed() ? connect(url) : nc),
      () => connect(url),
    );
    return entry.nc;
  }

  /** Gives back a command's connections; of the idle ones, only the one given back last stays. */
  private release(used: Set<string>): void {
    // A command that made no call (help, a usage error) leaves the kept connection alone.
    if (used.size === 0) return;
    const last = [...used].at(-1);
    for (const url of used) {
      const c = this.conns.get(url);
      if (c) c.users--;
    }
    for (const [url, c] of this.conns) {
      if (c.users > 0 || url === last) continue;
      this.conns.delete(url);
      void c.nc.then((nc) => nc.close()).catch(() => undefined);
    }
  }
}

/** As the CLI's own: no waiting for a server that is down, no reconnecting (a closed one is made again). */
function connect(url: string): Promise<NatsConnection> {
  return connectNats({
    url,
    name: 'berth-cli',
    extra: { waitOnFirstConnect: false, maxReconnectAttempts: 0 },
  });
}

/** True for a missing path (the command reports it) or a regular file outside /dev and /proc. */
function plainFile(path: string): boolean {
  let real: string;
  try {
    real = realpathSync(path);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ENOENT';
  }
  if (real.startsWith('/dev/') || real.startsWith('/proc/')) return false;
  return statSync(real, { throwIfNoEntry: false })?.isFile() === true;
}

/** Resolves once `s` has ended and handed on every write. */
function ended(s: NodeJS.WritableStream): Promise<void> {
  return new Promise((resolve) => s.end(() => resolve()));
}

/**
 * A stream whose writes become `out` or `err` frames, as the command's stdout or stderr. A write
 * is done once the client took it (or is gone): a slow reader slows the command (see printSink),
 * as a pipe slows the CLI run by hand, instead of growing the supervisor's buffers.
 */
function frameStream(
  type: 'out' | 'err',
  send: (line: ServedLine) => boolean,
  client: ServedClient,
): NodeJS.WriteStream {
  const w = new Writable({
    decodeStrings: false,
    write(chunk: string | Buffer, _enc, done) {
      if (chunk.length === 0 || send({ type, data: chunk })) done();
      else void client.drained().then(() => done());
    },
  });
  // A write after the command's end (a stray one of a command that stopped following when its
  // client hung up) is dropped, never an 'error' event that would end the supervisor.
  w.on('error', () => undefined);
  // Served output goes to the client's stdout, which the served command cannot see: as a pipe.
  return Object.assign(w, { isTTY: false }) as unknown as NodeJS.WriteStream;
}
