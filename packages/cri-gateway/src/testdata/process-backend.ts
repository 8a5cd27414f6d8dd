import { spawn } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { connect } from 'node:net';
import type { Duplex } from 'node:stream';
import type {
  AttachRequest,
  CommandIo,
  CommandResult,
  ExecRequest,
  StreamingBackend,
  TerminalSize,
} from '../streaming/types.js';

/**
 * A StreamingBackend over real host processes and sockets, for tests: exec spawns `cmd` directly,
 * attach runs `sh -c <attachScript>` as the "container's main process", port-forward dials the
 * port on 127.0.0.1. It records every resize it receives and emits 'resize', and 'exit' when a
 * process ends.
 */
export class ProcessBackend extends EventEmitter implements StreamingBackend {
  readonly resizes: TerminalSize[] = [];
  readonly execs: ExecRequest[] = [];

  constructor(private readonly attachScript = 'read line; echo "attached:$line"') {
    super();
  }

  exec(req: ExecRequest, io: CommandIo): Promise<CommandResult> {
    this.execs.push(req);
    const [file = '', ...args] = req.cmd;
    return this.run(file, args, io);
  }

  attach(_req: AttachRequest, io: CommandIo): Promise<CommandResult> {
    return this.run('sh', ['-c', this.attachScript], io);
  }

  portForward(_podSandboxId: string, port: number, stream: Duplex, signal: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      const socket = connect(port, '127.0.0.1');
      socket.once('error', reject);
      signal.addEventListener('abort', () => socket.destroy());
      socket.once('connect', () => {
        stream.pipe(socket);
        socket.pipe(stream);
      });
      socket.once('close', (hadError) => {
        if (!hadError) resolve();
      });
    });
  }

  private run(file: string, args: string[], io: CommandIo): Promise<CommandResult> {
    void (async () => {
      for await (const size of io.resize) {
        this.resizes.push(size);
        this.emit('resize', size);
      }
    })();
    return new Promise((resolve, reject) => {
      const child = spawn(file, args, { stdio: 'pipe' });
      child.once('error', reject);
      io.signal.addEventListener('abort', () => child.kill('SIGKILL'));
      if (io.stdin) io.stdin.pipe(child.stdin);
      else child.stdin.end();
      child.stdin.on('error', () => undefined); // the command may exit before reading all input
      if (io.stdout) child.stdout.pipe(io.stdout, { end: false });
      else child.stdout.resume();
      if (io.stderr) child.stderr.pipe(io.stderr, { end: false });
      else child.stderr.resume();
      // 'close' comes after the child's stdout and stderr have been read to the end.
      child.once('close', (code, signal) => {
        this.emit('exit', { code, signal });
        resolve({ exitCode: code ?? 128 + (signal === 'SIGKILL' ? 9 : 15) });
      });
    });
  }
}
