/**
 * A readiness probe of the embedded redis-server that speaks just enough RESP (AUTH, then
 * INFO server) to read the server's pid. The supervisor used a whole Redis client for this one
 * exchange at start-up, and kept its ~1.5 MB of modules for the rest of its life.
 */
import { connect } from 'node:net';

/** One RESP reply: a status or bulk string's text, or an error's message. */
type Reply = { error: false; text: string } | { error: true; text: string };

/**
 * Parses the complete replies at the start of `buf` (simple strings, errors, integers and bulk
 * strings, which is all AUTH and INFO answer). Returns them and how many bytes they took.
 */
export function parseReplies(buf: Buffer): { replies: Reply[]; used: number } {
  const replies: Reply[] = [];
  let at = 0;
  while (at < buf.length) {
    const eol = buf.indexOf('\r\n', at);
    if (eol < 0) break;
    const kind = String.fromCharCode(buf[at] as number);
    const line = buf.toString('utf8', at + 1, eol);
    if (kind === '+' || kind === ':' || kind === '-') {
      replies.push({ error: kind === '-', text: line });
      at = eol + 2;
      continue;
    }
    if (kind !== '$') throw new Error(`unexpected RESP reply type "${kind}"`);
    const len = Number(line);
    if (len < 0) {
      replies.push({ error: false, text: '' });
      at = eol + 2;
      continue;
    }
    const end = eol + 2 + len;
    if (buf.length < end + 2) break;
    replies.push({ error: false, text: buf.toString('utf8', eol + 2, end) });
    at = end + 2;
  }
  return { replies, used: at };
}

/** Encodes one command as a RESP array of bulk strings. */
function command(...args: string[]): string {
  return `*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`;
}

/**
 * The `process_id` a redis-server on 127.0.0.1:`port` reports in INFO server, after AUTH with
 * `password` when given; undefined when it does not answer (not listening yet, still loading,
 * wrong password) within `timeoutMs`.
 */
export function redisServerPid(
  port: number,
  password?: string,
  timeoutMs = 2000,
): Promise<number | undefined> {
  const want = password ? 2 : 1;
  return new Promise((resolve) => {
    const sock = connect({ host: '127.0.0.1', port });
    let buf = Buffer.alloc(0);
    const done = (pid: number | undefined) => {
      clearTimeout(timer);
      sock.destroy();
      resolve(pid);
    };
    const timer = setTimeout(() => done(undefined), timeoutMs);
    sock.on('error', () => done(undefined));
    sock.on('close', () => done(undefined));
    sock.on('connect', () => {
      sock.write(`${password ? command('AUTH', password) : ''}${command('INFO', 'server')}`);
    });
    sock.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      let parsed: ReturnType<typeof parseReplies>;
      try {
        parsed = parseReplies(buf);
      } catch {
        return done(undefined);
      }
      if (parsed.replies.length < want) return;
      const info = parsed.replies[want - 1];
      if (!info || info.error || parsed.replies.some((r) => r.error)) return done(undefined);
      const m = /^process_id:(\d+)\s*$/m.exec(info.text);
      done(m ? Number(m[1]) : undefined);
    });
  });
}
