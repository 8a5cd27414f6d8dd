import { type ChildProcess, spawn } from 'node:child_process';
import { statSync } from 'node:fs';
import { Socket } from 'node:net';
import { PassThrough, type Readable, type Writable } from 'node:stream';
import { BerthError, Code } from '@berth/api';
import { runCommandOffLoop } from './command.js';
import { startNative } from './spawn-native.js';

/** One message conmon writes on its sync or attach pipe (API version 1): `{"data": n, "message": s}`. */
export interface ConmonMessage {
  data: number;
  message?: string;
}

/**
 * Reads conmon's newline-delimited JSON messages from one pipe. conmon keeps the pipe open for its
 * whole life, so messages are taken one at a time rather than waiting for end of stream.
 */
export class MessageReader {
  private buf = '';
  private readonly queue: ConmonMessage[] = [];
  private waiting: { resolve: (m: ConmonMessage) => void; reject: (e: Error) => void } | undefined;
  private ended = false;

  constructor(
    private readonly stream: Readable,
    private readonly what: string,
    private readonly stderr: () => string,
  ) {
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => {
      this.buf += chunk;
      let nl = this.buf.indexOf('\n');
      while (nl >= 0) {
        const line = this.buf.slice(0, nl).trim();
        this.buf = this.buf.slice(nl + 1);
        if (line) this.push(line);
        nl = this.buf.indexOf('\n');
      }
    });
    stream.on('end', () => this.end());
    stream.on('close', () => this.end());
    stream.on('error', () => this.end());
  }

  private push(line: string): void {
    let msg: ConmonMessage;
    try {
      msg = JSON.parse(line) as ConmonMessage;
    } catch {
      msg = { data: -1, message: `conmon sent an unreadable message: ${line.slice(0, 200)}` };
    }
    if (this.waiting) {
      const w = this.waiting;
      this.waiting = undefined;
      w.resolve(msg);
    } else this.queue.push(msg);
  }

  private end(): void {
    if (this.ended) return;
    this.ended = true;
    if (this.waiting) {
      const w = this.waiting;
      this.waiting = undefined;
      const err = this.stderr().trim();
      w.reject(
        new BerthError(Code.INTERNAL, `conmon closed its ${this.what} pipe early${err ? `: ${err}` : ''}`),
      );
    }
  }

  /** The next message; fails when conmon goes away first or after timeoutMs. */
  next(timeoutMs: number): Promise<ConmonMessage> {
    const queued = this.queue.shift();
    if (queued) return Promise.resolve(queued);
    if (this.ended) {
      const err = this.stderr().trim();
      return Promise.reject(
        new BerthError(Code.INTERNAL, `conmon closed its ${this.what} pipe${err ? `: ${err}` : ''}`),
      );
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting = undefined;
        reject(
          new BerthError(Code.DEADLINE_EXCEEDED, `conmon sent nothing on its ${this.what} pipe in time`),
        );
      }, timeoutMs);
      timer.unref();
      this.waiting = {
        resolve: (m) => {
          clearTimeout(timer);
          resolve(m);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      };
    });
  }

  close(): void {
    this.stream.destroy();
  }
}

/** Paths and switches of one monitored process (a task's init or an exec). */
export interface ConmonOptions {
  conmon: string;
  runc: string;
  runcRoot: string;
  /** runc's container id. */
  cid: string;
  /** Short unique id naming the attach socket's directory link. */
  cuuid: string;
  /** The bundle (task) or exec directory: fifos ctl/winsz and the attach socket live here. */
  dir: string;
  pidFile: string;
  conmonPidFile: string;
  logPath: string;
  /** Where conmon writes `exit` and `oom` (the persist dir). */
  persistDir: string;
  /** Extra exit dir watched with inotify (file named after cid); the init process only. */
  exitDir?: string;
  socketDir: string;
  terminal: boolean;
  stdin: boolean;
  /** Keep the process's stdin open when an attach client hangs up. */
  leaveStdinOpen?: boolean;
  /** Exec mode: the process spec file; the process waits on the start pipe until started. */
  execSpec?: string;
  /** Pass `--no-sync-log` (when this conmon has it: see conmonSkipsLogSync). */
  noSyncLog?: boolean;
}

/** A conmon just spawned: its pipes, while the agent still holds them. */
export interface SpawnedMonitor {
  /** Node's handle of the process; absent when the spawn addon started it. */
  child?: ChildProcess;
  sync: MessageReader;
  /** Exec mode only: conmon reports here once its attach socket listens. */
  attach?: MessageReader;
  /** Exec mode only: writing to it lets runc exec go. */
  start?: Writable;
  stderr(): string;
}

/** The command line conmon gets for one monitored process (also a span attribute). */
export function conmonArgs(o: ConmonOptions): string[] {
  const args = [
    '--api-version',
    '1',
    '-c',
    o.cid,
    '-u',
    o.cuuid,
    '-n',
    o.cid,
    '-r',
    o.runc,
    '--runtime-arg',
    '--root',
    '--runtime-arg',
    o.runcRoot,
    '-b',
    o.dir,
    '-p',
    o.pidFile,
    '-P',
    o.conmonPidFile,
    '-l',
    `k8s-file:${o.logPath}`,
    '-0',
    o.persistDir,
    '--socket-dir-path',
    o.socketDir,
  ];
  if (o.exitDir) args.push('--exit-dir', o.exitDir);
  if (o.terminal) args.push('-t');
  if (o.stdin) args.push('-i');
  if (o.stdin && o.leaveStdinOpen) args.push('--leave-stdin-open');
  if (o.execSpec) args.push('-e', '--exec-process-spec', o.execSpec, '--exec-attach');
  if (o.noSyncLog) args.push('--no-sync-log');
  return args;
}

/** Per conmon path: the binary it was (device, inode, mtime) and what its `--help` said. */
const noSyncLogProbes = new Map<string, { binary: string; probe: Promise<boolean> }>();

/**
 * Whether this conmon binary takes `--no-sync-log`, read from its `--help` once per binary (false
 * when it cannot be run). Without it conmon fsyncs the container's log after the process exited and
 * before it writes the exit file: a journal commit on the path of every exit (0.2-12 ms here for
 * a new file, median 0.4, more under I/O load), which containerd's shim and docker's json-file
 * log do not pay either; the log's tail then has the page cache's durability, as theirs (the
 * shim's logSync setting keeps the fsync). The answer is kept for the file as it is: a conmon
 * replaced or changed in place (a downgrade to one without the flag) is asked again, where a
 * cached yes would fail every create. The stat is inline: µs, on every create.
 */
export function conmonSkipsLogSync(conmon: string): Promise<boolean> {
  const st = statSync(conmon, { throwIfNoEntry: false });
  if (!st) return Promise.resolve(false);
  const binary = `${st.dev}:${st.ino}:${st.mtimeMs}:${st.size}`;
  const known = noSyncLogProbes.get(conmon);
  if (known?.binary === binary) return known.probe;
  const probe = runCommandOffLoop(conmon, ['--help'], 10_000).then(
    (r) => /--no-sync-log\b/.test(r.stdout + r.stderr),
    () => false,
  );
  noSyncLogProbes.set(conmon, { binary, probe });
  return probe;
}

/**
 * Spawns conmon for one process. conmon double-forks and calls setsid, so it outlives the agent
 * and is out of reach of signals sent to the agent's process group; `detached` puts the short-lived
 * first child in its own session too. The pipes are socketpairs on fds 3..5 named in the
 * environment, as conmon's protocol wants.
 */
export function spawnConmon(o: ConmonOptions): SpawnedMonitor {
  const args = conmonArgs(o);
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
    _OCI_SYNCPIPE: '3',
  };
  // A task's monitor by the spawn addon (no fork on the event loop); an exec's, which also needs
  // a pipe written to, as before.
  if (!o.execSpec) {
    const started = startNative(o.conmon, args, env, o.dir, 2);
    if (started) return nativeMonitor(o.conmon, started);
  }
  // conmon reports a bad option on stdout: read it with its stderr.
  const stdio: ('ignore' | 'pipe')[] = ['ignore', 'pipe', 'pipe', 'pipe'];
  if (o.execSpec) {
    env._OCI_STARTPIPE = '4';
    env._OCI_ATTACHPIPE = '5';
    stdio.push('pipe', 'pipe');
  }
  // conmon writes files into its working directory (an `oom` marker when the kernel OOM-kills the
  // process): keep them in the process's own directory, never wherever the shim was started.
  const child = spawn(o.conmon, args, { stdio, env, detached: true, cwd: o.dir });
  let err = '';
  for (const out of [child.stdout, child.stderr]) {
    out?.setEncoding('utf8');
    out?.on('data', (s: string) => {
      if (err.length < 16_384) err += s;
    });
  }
  child.on('error', (e) => {
    err += `spawn ${o.conmon}: ${e.message}`;
  });
  child.unref();
  const stderr = () => err;
  const fds = child.stdio as unknown as (Readable | Writable | null)[];
  const sync = new MessageReader(fds[3] as Readable, 'sync', stderr);
  const out: SpawnedMonitor = { child, sync, stderr };
  if (o.execSpec) {
    out.start = fds[4] as Writable;
    // A conmon gone before it read the pipe (it refused its options, or was killed) fails this
    // write with EPIPE: what went wrong reaches the caller through the attach and sync pipes'
    // end with conmon's output; unhandled, the error would end the agent.
    out.start.on('error', () => undefined);
    out.attach = new MessageReader(fds[5] as Readable, 'attach', stderr);
    // conmon blocks on a first start-pipe read before it forks (time for cgroup placement).
    out.start.write('0');
  }
  return out;
}

/**
 * The monitor the spawn addon is starting (fd 2 its stderr, fd 3 its sync pipe): the sync reader
 * exists at once and gets the socket's bytes once the start settles; a failed start ends it with
 * the error, as a spawn 'error' does.
 */
function nativeMonitor(conmon: string, started: Promise<{ fds: number[] }>): SpawnedMonitor {
  let err = '';
  const stderr = () => err;
  const syncIn = new PassThrough();
  const sync = new MessageReader(syncIn, 'sync', stderr);
  started.then(
    ({ fds: [errFd, syncFd] }) => {
      const errs = new Socket({ fd: errFd as number, readable: true, writable: false });
      errs.setEncoding('utf8');
      errs.on('data', (s: string) => {
        if (err.length < 16_384) err += s;
      });
      errs.on('error', () => undefined);
      const pipe = new Socket({ fd: syncFd as number, readable: true, writable: false });
      pipe.on('error', () => syncIn.end());
      pipe.pipe(syncIn);
      // The reader's close() destroys its stream: the socket (and its fd) go with it.
      syncIn.on('close', () => pipe.destroy());
      if (syncIn.destroyed) pipe.destroy();
    },
    (e: Error) => {
      err += `spawn ${conmon}: ${e.message}`;
      syncIn.end();
    },
  );
  return { sync, stderr };
}
