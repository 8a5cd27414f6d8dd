import type { Duplex } from 'node:stream';

/**
 * Wires a socket taken over by an HTTP upgrade (SPDY or WebSocket): its bytes go to `onBytes`, an
 * error or a half-close ends it (the HTTP server keeps upgraded sockets half-open; a client that
 * stopped sending is gone), as does `idleTimeoutMs` of silence; `onClose` runs once it is closed.
 * Resolves `closed` when it is.
 */
export function adoptUpgradedSocket(
  socket: Duplex,
  idleTimeoutMs: number,
  onBytes: (chunk: Buffer) => void,
  onClose: () => void,
): Promise<void> {
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  socket.on('data', onBytes);
  socket.on('error', () => socket.destroy());
  socket.once('end', () => socket.destroy());
  socket.once('close', onClose);
  if ('setTimeout' in socket && typeof socket.setTimeout === 'function') {
    socket.setTimeout(idleTimeoutMs, () => socket.destroy());
  }
  return closed;
}
