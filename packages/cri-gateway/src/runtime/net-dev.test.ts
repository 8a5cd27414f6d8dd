import { describe, expect, it } from 'vitest';
import { netnsCounters, parseNetDev } from './net-dev.js';

const sample = `Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:     120       2    0    0    0     0          0         0      120       2    0    0    0     0       0          0
  eth0: 18446744073709551615  31    4    0    0     0          0         0     2048      20    1    0    0     0       0          0
 broken: 1 2 3
`;

describe('parseNetDev', () => {
  it('reads each interface with its byte and error counters, as unsigned 64-bit numbers', () => {
    expect(parseNetDev(sample)).toEqual([
      { name: 'lo', rxBytes: 120n, rxErrors: 0n, txBytes: 120n, txErrors: 0n },
      { name: 'eth0', rxBytes: 18446744073709551615n, rxErrors: 4n, txBytes: 2048n, txErrors: 1n },
    ]);
  });

  it('reads the interfaces of a live process without loopback, and nothing for a gone one', async () => {
    const own = await netnsCounters(process.pid);
    expect(own).toBeDefined();
    expect(own?.some((i) => i.name === 'lo')).toBe(false);
    expect(await netnsCounters(2 ** 22 + 1)).toBeUndefined();
  });

  it('reads a process only while it is in the namespace named (its pid may be reused)', async () => {
    expect(await netnsCounters(process.pid, `/proc/${process.pid}/ns/net`)).toBeDefined();
    // Another namespace's file (this process's mount namespace stands in for any other nsfs inode).
    expect(await netnsCounters(process.pid, `/proc/${process.pid}/ns/mnt`)).toBeUndefined();
  });
});
