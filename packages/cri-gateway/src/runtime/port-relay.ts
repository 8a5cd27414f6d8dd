import { spawn } from 'node:child_process';
import type { Duplex } from 'node:stream';
import { BerthError, Code } from '@berth/api';

/** Copies a client's stream to a TCP port inside a network namespace. */
export interface PortRelay {
  /**
   * Connects to 127.0.0.1:`port` inside the namespace at `netnsPath` and copies bytes both ways
   * until either end closes; rejects UNAVAILABLE when the port cannot be reached.
   */
  forward(netnsPath: string, port: number, stream: Duplex, signal: AbortSignal): Promise<void>;
}

/** Exit status of the relay when it could not connect (its reason is on stderr). */
export const RELAY_CONNECT_FAILED = 3;

/**
 * The relay, run with `node -e` inside the namespace (no file to find next to the gateway's code):
 * connects to 127.0.0.1:<argv[1]> (refused: [::1], as containerd dials "localhost"), copies stdin
 * to the connection and the connection to stdout.
 * Exits 0 when the connection closed normally, RELAY_CONNECT_FAILED when it could not connect,
 * 1 when it failed later. Once the connection closed it stops reading stdin so it can exit even if
 * the client never ends its side.
 */
const RELAY_SOURCE = `
const net = require('node:net');
const port = Number(process.argv[1]);
const dial = (host, fallback, earlier) => {
  let connected = false;
  const socket = net.connect({ host, port });
  socket.once('connect', () => {
    connected = true;
    process.stdin.pipe(socket);
    socket.pipe(process.stdout);
  });
  socket.once('error', (err) => {
    if (!connected && fallback && err.code === 'ECONNREFUSED') return dial(fallback, '', err.message + '; ');
    process.stderr.write((earlier || '') + err.message + '\\n');
    process.exitCode = connected ? 1 : ${RELAY_CONNECT_FAILED};
  });
  socket.once('close', () => connected && process.stdin.destroy());
  process.stdout.on('error', () => socket.destroy());
};
dial('127.0.0.1', '::1');
`;

/**
 * A PortRelay that runs `nsenter --net=<ns> node -e <relay> <port>` per connection: the
 * gateway runs as root on the node, and a process is the only way Node gets a socket in another
 * namespace. The child's stdin and stdout are the connection.
 */
export class NsenterPortRelay implements PortRelay {
  constructor(
    private readonly nsenter = 'nsenter',
    private readonly node = process.execPath,
  ) {}

  forward(netnsPath: string, port: number, stream: Duplex, signal: AbortSignal): Promise<void> {
    if (!Number.isInteger(port) || port < 1 || port > 65535) {
      return Promise.reject(new BerthError(Code.INVALID_ARGUMENT, `port ${port} is not in 1..65535`));
    }
    return new Promise((resolve, reject) => {
      const child = spawn(
        this.nsenter,
        [`--net=${netnsPath}`, '--', this.node, '-e', RELAY_SOURCE, String(port)],
        {
          stdio: ['pipe', 'pipe', 'pipe'],
        },
      );
      let stderr = '';
      child.stderr.setEncoding('utf8');
      child.stderr.on('data', (s: string) => {
        if (stderr.length < 4096) stderr += s;
      });
      const kill = () => child.kill('SIGKILL');
      signal.addEventListener('abort', kill, { once: true });
      stream.pipe(child.stdin);
      child.stdin.on('error', () => undefined); // the relay may exit before it read all input
      child.stdout.pipe(stream);
      // A client that resets its stream ends the connection too.
      stream.once('close', () => {
        if (child.exitCode === null) child.stdin.destroy();
      });
      stream.on('error', () => child.stdin.destroy());
      child.once('error', (err) => {
        signal.removeEventListener('abort', kill);
        reject(new BerthError(Code.INTERNAL, `cannot run ${this.nsenter}: ${err.message}`));
      });
      child.once('close', (code, sig) => {
        signal.removeEventListener('abort', kill);
        stream.unpipe(child.stdin);
        const why = stderr.trim();
        if (code === 0 || signal.aborted) resolve();
        else if (code === RELAY_CONNECT_FAILED) {
          reject(new BerthError(Code.UNAVAILABLE, `cannot connect to port ${port} in ${netnsPath}: ${why}`));
        } else {
          reject(
            new BerthError(
              Code.INTERNAL,
              `port ${port} relay in ${netnsPath} ended with ${sig ?? `status ${code}`}${why ? `: ${why}` : ''}`,
            ),
          );
        }
      });
    });
  }
}
