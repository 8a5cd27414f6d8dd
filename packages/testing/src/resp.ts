import { readFileSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import { connect as tlsConnect } from 'node:tls';

/** A RESP reply: a string, an integer, null, an error, or an array of those. */
export type RespValue = string | number | null | Error | RespValue[];

/** TLS settings of a raw Redis connection: the CA to trust and, optionally, a client certificate. */
export interface RespTls {
  ca: string;
  cert?: string;
  key?: string;
}

/** Parses one RESP value at `at`; undefined when the buffer does not hold all of it yet. */
function parse(buf: string, at: number): { value: RespValue; end: number } | undefined {
  const eol = buf.indexOf('\r\n', at);
  if (eol < 0) return undefined;
  const line = buf.slice(at + 1, eol);
  switch (buf[at]) {
    case '+':
      return { value: line, end: eol + 2 };
    case '-':
      return { value: new Error(line), end: eol + 2 };
    case ':':
      return { value: Number(line), end: eol + 2 };
    case '$': {
      const n = Number(line);
      if (n < 0) return { value: null, end: eol + 2 };
      // Byte lengths: the replies read here (INFO, addresses) are ASCII.
      if (buf.length < eol + 2 + n + 2) return undefined;
      return { value: buf.slice(eol + 2, eol + 2 + n), end: eol + 2 + n + 2 };
    }
    case '*': {
      const n = Number(line);
      if (n < 0) return { value: null, end: eol + 2 };
      const items: RespValue[] = [];
      let end = eol + 2;
      for (let i = 0; i < n; i++) {
        const item = parse(buf, end);
        if (!item) return undefined;
        items.push(item.value);
        end = item.end;
      }
      return { value: items, end };
    }
    default:
      throw new Error(`unexpected RESP reply: ${JSON.stringify(buf.slice(at, at + 40))}`);
  }
}

/**
 * Sends one command to a Redis server or Sentinel on loopback and resolves with its reply. The
 * test helpers use it to read a server's state without a Redis client library.
 */
export function redisCommand(port: number, args: string[], tls?: RespTls): Promise<RespValue> {
  return new Promise((resolve, reject) => {
    const socket = tls
      ? tlsConnect({ host: '127.0.0.1', port, servername: 'localhost', ...tlsFiles(tls) })
      : netConnect(port, '127.0.0.1');
    let buf = '';
    const timer = setTimeout(() => socket.destroy(new Error(`no reply from 127.0.0.1:${port}`)), 5000);
    socket.once(tls ? 'secureConnect' : 'connect', () => {
      socket.write(`*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`);
    });
    socket.on('data', (b: Buffer) => {
      buf += b.toString();
      const reply = parse(buf, 0);
      if (!reply) return;
      clearTimeout(timer);
      socket.destroy();
      resolve(reply.value);
    });
    socket.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    // A server may close the connection without a reply and without an error (Sentinel's
    // `CLIENT KILL TYPE normal` in a failover): the timer's destroy is then a no-op on a socket
    // already closed, so the close itself must settle the call (after a reply it changes nothing).
    socket.once('close', () => {
      clearTimeout(timer);
      reject(new Error(`127.0.0.1:${port} closed the connection before replying to ${args[0]}`));
    });
  });
}

function tlsFiles(tls: RespTls): { ca: Buffer; cert?: Buffer; key?: Buffer } {
  return {
    ca: readFileSync(tls.ca),
    ...(tls.cert ? { cert: readFileSync(tls.cert) } : {}),
    ...(tls.key ? { key: readFileSync(tls.key) } : {}),
  };
}
