import { BerthError, Code } from '@berth/api';
import { DEFAULT_LIMITS, EntryType, type TarEntry, type TarLimits } from './entry.js';
import { TarParser, type TarSink } from './parser.js';

/** One entry of an archive being read: consume `body` (or not) before asking for the next entry. */
export interface TarStreamEntry {
  header: TarEntry;
  /** The entry's data as it arrives; empty for everything but regular files. */
  body: AsyncIterable<Buffer>;
}

type Event = { kind: 'entry'; entry: TarEntry } | { kind: 'data'; chunk: Buffer } | { kind: 'end' };

/** Collects what the parser reports for one input chunk, to be handed out one event at a time. */
class EventQueue implements TarSink {
  private events: Event[] = [];
  private next = 0;

  entry(entry: TarEntry): void {
    this.events.push({ kind: 'entry', entry });
  }

  data(chunk: Buffer): void {
    this.events.push({ kind: 'data', chunk });
  }

  endEntry(): void {
    this.events.push({ kind: 'end' });
  }

  shift(): Event | undefined {
    const e = this.events[this.next];
    if (e === undefined) return undefined;
    this.next++;
    if (this.next === this.events.length) {
      this.events = [];
      this.next = 0;
    }
    return e;
  }
}

const empty: AsyncIterable<Buffer> = { [Symbol.asyncIterator]: async function* () {} };

/**
 * Reads a tar stream entry by entry with the same parser and checks the unpacker uses, without
 * buffering entry data: the source is read one chunk at a time, only as fast as the caller
 * consumes entries and bodies, and a body the caller does not read is skipped. The source must
 * not reuse a chunk's memory after yielding it (Node streams never do): bodies are views of it.
 */
export async function* readTar(
  src: AsyncIterable<Uint8Array>,
  limits: TarLimits = DEFAULT_LIMITS,
): AsyncGenerator<TarStreamEntry> {
  const queue = new EventQueue();
  const parser = new TarParser(queue, limits);
  const it = src[Symbol.asyncIterator]();
  let srcDone = false;
  /** The next parser event, reading more of the source when needed; undefined at the end. */
  const next = async (): Promise<Event | undefined> => {
    for (;;) {
      const ev = queue.shift();
      if (ev !== undefined) return ev;
      if (srcDone || parser.finished) return undefined;
      const r = await it.next();
      if (r.done) {
        srcDone = true;
        parser.end();
        continue;
      }
      const v = r.value;
      parser.write(Buffer.isBuffer(v) ? v : Buffer.from(v.buffer, v.byteOffset, v.byteLength));
    }
  };
  const truncated = () => new BerthError(Code.INVALID_ARGUMENT, 'invalid tar stream: truncated entry data');
  try {
    for (;;) {
      const ev = await next();
      if (ev === undefined) return;
      // Data and end events of a body were consumed below; anything else here is an entry.
      if (ev.kind !== 'entry') continue;
      const header = ev.entry;
      if (header.type !== EntryType.file) {
        yield { header, body: empty };
        continue;
      }
      let ended = false;
      const body = (async function* () {
        while (!ended) {
          const d = await next();
          if (d === undefined) throw truncated();
          if (d.kind === 'data') yield d.chunk;
          else ended = true;
        }
      })();
      yield { header, body };
      while (!ended) {
        const d = await next();
        if (d === undefined) throw truncated();
        if (d.kind !== 'data') ended = true;
      }
    }
  } finally {
    if (!srcDone) await it.return?.();
  }
}
