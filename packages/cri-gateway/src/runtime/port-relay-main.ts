/**
 * The relay process of a port-forward, run by the gateway inside a pod's network namespace
 * (`nsenter --net=<ns> node port-relay-main.js <port>`): it connects to 127.0.0.1:<port> there and
 * copies its stdin to the connection and the connection to its stdout. Node cannot enter a
 * namespace itself, hence a process per forwarded connection.
 *
 * Exit status: 0 when the connection closed normally, CONNECT_FAILED (with the reason on stderr)
 * when the port could not be reached, 1 when the connection failed later.
 */
import { connect } from 'node:net';

/** Exit status of a relay that could not connect: RELAY_CONNECT_FAILED in port-relay.ts. */
const CONNECT_FAILED = 3;

const port = Number(process.argv[2]);
if (!Number.isInteger(port) || port < 1 || port > 65535) {
  process.stderr.write(`invalid port "${process.argv[2] ?? ''}"\n`);
  process.exit(2);
}

let connected = false;
const socket = connect({ host: '127.0.0.1', port });
socket.once('connect', () => {
  connected = true;
  process.stdin.pipe(socket);
  socket.pipe(process.stdout);
});
socket.once('error', (err) => {
  process.stderr.write(`${err.message}\n`);
  process.exitCode = connected ? 1 : CONNECT_FAILED;
});
socket.once('close', () => {
  // The client may never end its side: stop reading it so the process can exit.
  process.stdin.destroy();
});
process.stdout.on('error', () => socket.destroy());
