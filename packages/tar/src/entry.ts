/** Times as seconds and nanoseconds (PAX records carry sub-second times). */
export interface Timespec {
  sec: number;
  nsec: number;
}

/** Entry types berth reads and writes; every other type in an archive is refused. */
export const EntryType = {
  file: 'file',
  dir: 'dir',
  symlink: 'symlink',
  hardlink: 'hardlink',
  char: 'char',
  block: 'block',
  fifo: 'fifo',
} as const;
export type EntryType = (typeof EntryType)[keyof typeof EntryType];

/** One tar entry after PAX and GNU long-name records were folded into it. */
export interface TarEntry {
  /** Raw name bytes as a latin1 string (exact bytes, whatever the encoding). */
  name: string;
  type: EntryType;
  /** Permission bits plus setuid/setgid/sticky (07777). */
  mode: number;
  uid: number;
  gid: number;
  /** Bytes of data that follow (regular files only; others' data is skipped). */
  size: number;
  mtime: Timespec;
  atime: Timespec | undefined;
  /** Symlink target or hardlink target, latin1 raw bytes. */
  linkname: string;
  devmajor: number;
  devminor: number;
  /** Extended attributes from SCHILY.xattr.* PAX records, values as raw bytes. */
  xattrs: [string, Buffer][] | undefined;
}

/** Bounds that keep a hostile archive from making the parser hold much memory. */
export interface TarLimits {
  /** Largest PAX header or GNU long name/link record accepted. */
  maxMetaBytes: number;
}

/** The default bound: 1 MiB of PAX or long-name metadata per entry. */
export const DEFAULT_LIMITS: TarLimits = { maxMetaBytes: 1 << 20 };

/**
 * Shows a raw-byte (latin1) name as the UTF-8 text it most likely is, for messages and for
 * callers that match names as text (image archives).
 */
export function nameText(raw: string): string {
  return Buffer.from(raw, 'latin1').toString('utf8');
}
