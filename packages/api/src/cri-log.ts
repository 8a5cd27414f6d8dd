// The CRI container log format (kubelet's, written by conmon): every reader of a container's log
// (the shim, the CLI, the SDK) parses lines with this one function.

/** One line of a CRI-format log: `<RFC3339Nano> <stdout|stderr> <P|F>[:tags] <content>`. */
export interface CriLogLine {
  /** RFC 3339 time the chunk was written. */
  time: string;
  stream: 'stdout' | 'stderr';
  /** False for a partial chunk (tag P): no newline followed its content. */
  full: boolean;
  content: string;
}

/** Parses one CRI log line (without its newline); undefined when it is not one. */
export function parseCriLine(line: string): CriLogLine | undefined {
  const a = line.indexOf(' ');
  const b = line.indexOf(' ', a + 1);
  if (a <= 0 || b < 0) return undefined;
  const stream = line.slice(a + 1, b);
  if (stream !== 'stdout' && stream !== 'stderr') return undefined;
  const c = line.indexOf(' ', b + 1);
  const tag = (c < 0 ? line.slice(b + 1) : line.slice(b + 1, c)).split(':')[0];
  if (tag !== 'P' && tag !== 'F') return undefined;
  return { time: line.slice(0, a), stream, full: tag === 'F', content: c < 0 ? '' : line.slice(c + 1) };
}
