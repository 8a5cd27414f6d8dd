import { open } from 'node:fs/promises';
import { parseCriLine } from '@berth/api';

export { type CriLogLine, parseCriLine } from '@berth/api';

/**
 * Reads a CRI-format log file back into the two streams the process wrote (full lines get their
 * newline back, partial chunks do not), stopping after maxBytes of content.
 */
export async function readCriStreams(
  path: string,
  maxBytes = 4 * 1024 * 1024,
): Promise<{ stdout: string; stderr: string; truncated: boolean }> {
  let text: string;
  const fh = await open(path, 'r');
  try {
    const st = await fh.stat();
    // Each line carries ~40 bytes of prefix: read enough to hold maxBytes of content.
    const want = Math.min(st.size, maxBytes * 2 + 64 * 1024);
    const buf = Buffer.alloc(want);
    const { bytesRead } = await fh.read(buf, 0, want, 0);
    text = buf.subarray(0, bytesRead).toString('utf8');
  } finally {
    await fh.close();
  }
  const out = { stdout: '', stderr: '' };
  let total = 0;
  let truncated = false;
  for (const line of text.split('\n')) {
    const l = parseCriLine(line);
    if (!l) continue;
    const piece = l.full ? `${l.content}\n` : l.content;
    if (total + piece.length > maxBytes) {
      truncated = true;
      break;
    }
    total += piece.length;
    out[l.stream] += piece;
  }
  return { ...out, truncated };
}
