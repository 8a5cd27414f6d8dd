import { connect, type Socket } from 'node:net';

/** The response to an upgrade request: status, lowercased headers, the socket, and bytes past the head. */
export interface UpgradeResponse {
  status: number;
  headers: Record<string, string>;
  socket: Socket;
  rest: Buffer;
  /** For a refusal: the whole body, read until the server closed. */
  body: string;
}

/** Sends a raw HTTP/1.1 request with the given header lines and reads the response head. */
export async function rawUpgrade(
  url: string,
  headerLines: string[],
  method = 'GET',
): Promise<UpgradeResponse> {
  const u = new URL(url);
  const socket = connect(Number(u.port), u.hostname);
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  socket.write(
    `${method} ${u.pathname}${u.search} HTTP/1.1\r\nHost: ${u.host}\r\n${headerLines.map((l) => `${l}\r\n`).join('')}\r\n`,
  );
  let buffered = Buffer.alloc(0);
  const head = await new Promise<{ head: string; rest: Buffer }>((resolve, reject) => {
    const onData = (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      const end = buffered.indexOf('\r\n\r\n');
      if (end < 0) return;
      socket.off('data', onData);
      socket.pause();
      resolve({ head: buffered.subarray(0, end).toString('latin1'), rest: buffered.subarray(end + 4) });
    };
    socket.on('data', onData);
    socket.once('error', reject);
    socket.once('close', () =>
      reject(new Error(`connection closed before a response: ${buffered.toString()}`)),
    );
  });
  const [statusLine = '', ...lines] = head.head.split('\r\n');
  const status = Number(statusLine.split(' ')[1]);
  const headers: Record<string, string> = {};
  for (const line of lines) {
    const i = line.indexOf(':');
    const name = line.slice(0, i).trim().toLowerCase();
    headers[name] = headers[name]
      ? `${headers[name]}, ${line.slice(i + 1).trim()}`
      : line.slice(i + 1).trim();
  }
  let body = '';
  if (status !== 101) {
    const chunks: Buffer[] = [head.rest];
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.resume();
    await new Promise((resolve) => socket.once('close', resolve));
    body = Buffer.concat(chunks).toString('utf8');
  }
  return { status, headers, socket, rest: head.rest, body };
}
