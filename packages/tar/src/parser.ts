import { BerthError, Code } from '@berth/api';
import { DEFAULT_LIMITS, EntryType, type TarEntry, type TarLimits, type Timespec } from './entry.js';
import { BLOCK, bad, checksumOk, cstr, isZero, num, parsePax, parsePaxTime, paxInt } from './fields.js';

/** Receives entries as the parser finds them; called synchronously from write(). */
export interface TarSink {
  entry(e: TarEntry): void;
  /** Body bytes of the current regular-file entry (a view into the caller's chunk). */
  data(chunk: Buffer): void;
  endEntry(): void;
}

const State = { header: 0, body: 1, meta: 2, pad: 3, done: 4 } as const;
type State = (typeof State)[keyof typeof State];

interface Pending {
  pax: Map<string, Buffer> | undefined;
  longName: string | undefined;
  longLink: string | undefined;
}

/**
 * A streaming tar reader (ustar, PAX and GNU long names), the one berth uses for layers and image
 * archives. Written here rather than taken from npm so that every bound is ours: headers are
 * parsed in place from the chunk, file data is handed on as views of the input (nothing buffered
 * beyond one 512-byte header or a bounded PAX record), names and PAX values stay raw bytes, and
 * every field a hostile archive could abuse is checked here (docs/tar.md says why not tar-stream).
 */
export class TarParser {
  private state: State = State.header;
  private readonly hdr = Buffer.alloc(BLOCK);
  private hdrFill = 0;
  private remaining = 0;
  private padding = 0;
  private metaKind = 0;
  private meta: Buffer[] = [];
  private inFile = false;
  private pending: Pending = { pax: undefined, longName: undefined, longLink: undefined };
  /** Entries handed to the sink so far. */
  entries = 0;

  constructor(
    private readonly sink: TarSink,
    private readonly limits: TarLimits = DEFAULT_LIMITS,
  ) {}

  /** True once the end-of-archive marker was read (the rest of the stream is ignored). */
  get finished(): boolean {
    return this.state === State.done;
  }

  /** Parses the next chunk of the stream, calling the sink for what it completes. */
  write(chunk: Buffer): void {
    let off = 0;
    const len = chunk.length;
    while (off < len) {
      switch (this.state) {
        case State.done:
          return;
        case State.header: {
          if (this.hdrFill === 0 && len - off >= BLOCK) {
            this.onHeader(chunk.subarray(off, off + BLOCK));
            off += BLOCK;
          } else {
            const n = Math.min(BLOCK - this.hdrFill, len - off);
            chunk.copy(this.hdr, this.hdrFill, off, off + n);
            this.hdrFill += n;
            off += n;
            if (this.hdrFill === BLOCK) {
              this.hdrFill = 0;
              this.onHeader(this.hdr);
            }
          }
          break;
        }
        case State.body: {
          const n = Math.min(this.remaining, len - off);
          if (this.inFile) this.sink.data(chunk.subarray(off, off + n));
          this.remaining -= n;
          off += n;
          if (this.remaining === 0) this.endBody();
          break;
        }
        case State.meta: {
          const n = Math.min(this.remaining, len - off);
          this.meta.push(Buffer.from(chunk.subarray(off, off + n)));
          this.remaining -= n;
          off += n;
          if (this.remaining === 0) this.endMeta();
          break;
        }
        case State.pad: {
          const n = Math.min(this.padding, len - off);
          this.padding -= n;
          off += n;
          if (this.padding === 0) this.state = State.header;
          break;
        }
      }
    }
  }

  /** Called at the end of the stream: a stream cut inside an entry is an error. */
  end(): void {
    if (this.state === State.done) return;
    const p = this.pending;
    const pendingMeta = p.pax !== undefined || p.longName !== undefined || p.longLink !== undefined;
    if (this.state === State.header && this.hdrFill === 0 && !pendingMeta) return;
    throw bad('unexpected end of archive (truncated layer)');
  }

  private afterData(size: number): void {
    this.padding = (BLOCK - (size % BLOCK)) % BLOCK;
    this.state = this.padding > 0 ? State.pad : State.header;
  }

  private endBody(): void {
    if (this.inFile) {
      this.inFile = false;
      this.sink.endEntry();
    }
    this.afterData(this.dataSize);
  }

  private dataSize = 0;

  private onHeader(h: Buffer): void {
    if (isZero(h)) {
      this.state = State.done;
      return;
    }
    if (!checksumOk(h)) throw bad('header checksum mismatch');
    const flag = h[156] as number;
    let size = num(h, 124, 12);
    if (size < 0) throw bad('negative entry size');
    const typeChar = String.fromCharCode(flag);
    if (typeChar === 'x' || typeChar === 'g' || typeChar === 'L' || typeChar === 'K') {
      if (size > this.limits.maxMetaBytes) {
        throw new BerthError(
          Code.RESOURCE_EXHAUSTED,
          `tar metadata record of ${size} bytes exceeds the limit of ${this.limits.maxMetaBytes}`,
        );
      }
      this.metaKind = flag;
      this.dataSize = size;
      this.meta = [];
      this.remaining = size;
      if (size === 0) this.endMeta();
      else this.state = State.meta;
      return;
    }
    const magic = h.toString('latin1', 257, 263);
    const ustar = magic === 'ustar\0';
    let name = cstr(h, 0, 100);
    if (ustar && h[345] !== 0) name = `${cstr(h, 345, 155)}/${name}`;
    let linkname = cstr(h, 157, 100);
    let uid = num(h, 108, 8);
    let gid = num(h, 116, 8);
    let mtime: Timespec = { sec: num(h, 136, 12), nsec: 0 };
    let atime: Timespec | undefined;
    let xattrs: [string, Buffer][] | undefined;
    const p = this.pending;
    if (p.longName !== undefined) name = p.longName;
    if (p.longLink !== undefined) linkname = p.longLink;
    if (p.pax) {
      for (const [k, v] of p.pax) {
        const s = v.toString('latin1', 0, v.length);
        switch (k) {
          case 'path':
            name = s;
            break;
          case 'linkpath':
            linkname = s;
            break;
          case 'size':
            size = paxInt(k, s);
            break;
          case 'uid':
            uid = paxInt(k, s);
            break;
          case 'gid':
            gid = paxInt(k, s);
            break;
          case 'mtime':
            mtime = parsePaxTime(s);
            break;
          case 'atime':
            atime = parsePaxTime(s);
            break;
          default:
            if (k.startsWith('SCHILY.xattr.')) {
              xattrs ??= [];
              xattrs.push([k.slice('SCHILY.xattr.'.length), v]);
            } else if (k.startsWith('GNU.sparse.')) {
              throw new BerthError(
                Code.UNIMPLEMENTED,
                `tar entry "${name}": GNU sparse files are not supported`,
              );
            }
        }
      }
    }
    this.pending = { pax: undefined, longName: undefined, longLink: undefined };
    let type: EntryType;
    switch (typeChar) {
      case '0':
      case '7':
        type = EntryType.file;
        break;
      case '\0':
        type = name.endsWith('/') ? EntryType.dir : EntryType.file;
        break;
      case '1':
        type = EntryType.hardlink;
        break;
      case '2':
        type = EntryType.symlink;
        break;
      case '3':
        type = EntryType.char;
        break;
      case '4':
        type = EntryType.block;
        break;
      case '5':
        type = EntryType.dir;
        break;
      case '6':
        type = EntryType.fifo;
        break;
      case 'S':
        throw new BerthError(Code.UNIMPLEMENTED, `tar entry "${name}": GNU sparse files are not supported`);
      default:
        throw bad(`entry "${name}" has unsupported type ${JSON.stringify(typeChar)}`);
    }
    if (uid < 0 || gid < 0 || uid > 0xfffffffe || gid > 0xfffffffe) {
      throw bad(`entry "${name}" has an out-of-range owner ${uid}:${gid}`);
    }
    const entry: TarEntry = {
      name,
      type,
      mode: num(h, 100, 8) & 0o7777,
      uid,
      gid,
      size,
      mtime,
      atime,
      linkname,
      devmajor: type === EntryType.char || type === EntryType.block ? num(h, 329, 8) : 0,
      devminor: type === EntryType.char || type === EntryType.block ? num(h, 337, 8) : 0,
      xattrs,
    };
    this.entries++;
    this.dataSize = size;
    this.inFile = type === EntryType.file;
    this.sink.entry(entry);
    if (size === 0) {
      if (this.inFile) {
        this.inFile = false;
        this.sink.endEntry();
      }
      this.state = State.header;
      return;
    }
    this.remaining = size;
    this.state = State.body;
  }

  private endMeta(): void {
    const data = this.meta.length === 1 ? (this.meta[0] as Buffer) : Buffer.concat(this.meta);
    this.meta = [];
    const kind = String.fromCharCode(this.metaKind);
    if (kind === 'x') this.pending.pax = parsePax(data);
    else if (kind === 'L') this.pending.longName = cstr(data, 0, data.length);
    else if (kind === 'K') this.pending.longLink = cstr(data, 0, data.length);
    // 'g' (global PAX) is read and ignored, as containerd does.
    this.afterData(this.dataSize);
  }
}
