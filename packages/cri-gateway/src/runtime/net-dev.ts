import { readFile, stat } from 'node:fs/promises';

/** One interface's counters, as /proc/<pid>/net/dev lists them. */
export interface InterfaceCounters {
  name: string;
  rxBytes: bigint;
  rxErrors: bigint;
  txBytes: bigint;
  txErrors: bigint;
}

/**
 * Parses /proc/<pid>/net/dev: two header lines, then `name: rx bytes packets errs drop fifo frame
 * compressed multicast tx bytes packets errs drop fifo colls carrier compressed`. Lines that do
 * not have the 16 counters are skipped.
 */
export function parseNetDev(text: string): InterfaceCounters[] {
  const out: InterfaceCounters[] = [];
  for (const line of text.split('\n').slice(2)) {
    const colon = line.indexOf(':');
    if (colon < 0) continue;
    const name = line.slice(0, colon).trim();
    const f = line
      .slice(colon + 1)
      .trim()
      .split(/\s+/);
    if (!name || f.length < 16 || !f.every((x) => /^\d+$/.test(x))) continue;
    const n = (i: number) => BigInt(f[i] as string);
    out.push({ name, rxBytes: n(0), rxErrors: n(2), txBytes: n(8), txErrors: n(10) });
  }
  return out;
}

/**
 * The interface counters of the network namespace process `pid` is in (loopback left out), or
 * undefined when the process is gone or, given `netnsPath` (a pinned namespace), is not in that
 * namespace: its pid may have been taken by another process.
 */
export async function netnsCounters(
  pid: number,
  netnsPath?: string,
): Promise<InterfaceCounters[] | undefined> {
  let text: string;
  try {
    if (netnsPath !== undefined) {
      const [want, own] = await Promise.all([stat(netnsPath), stat(`/proc/${pid}/ns/net`)]);
      if (want.dev !== own.dev || want.ino !== own.ino) return undefined;
    }
    text = await readFile(`/proc/${pid}/net/dev`, 'utf8');
  } catch {
    return undefined;
  }
  return parseNetDev(text).filter((i) => i.name !== 'lo');
}
