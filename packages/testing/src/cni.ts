import { execFile } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';

const exec = promisify(execFile);

/** A private CNI network for one test stack: its shim settings and how to remove its bridge. */
export interface TestCniNetwork {
  /** `services.shim` config keys: conf dir, bridge, subnet and host-local data dir of its own. */
  settings: { cniConfDir: string; cniBridge: string; cniSubnet: string; cniDataDir: string };
  bridge: string;
  subnet: string;
  /** The host-local lease directory of the default network (`<dataDir>/<network name>`). */
  leaseDir: string;
  /**
   * Removes the bridge (the bridge plugin never deletes it) and the one masquerade rule the shim
   * keeps for the network's subnet; files go with the test's root.
   */
  close(): Promise<void>;
}

/** IPv4 routes of the host as [network, mask] numbers (from /proc/net/route, little-endian hex). */
function routes(): [number, number][] {
  const le = (h: string) => {
    const b = Buffer.from(h, 'hex');
    return b.readUInt32LE(0);
  };
  return readFileSync('/proc/net/route', 'utf8')
    .split('\n')
    .slice(1)
    .map((l) => l.trim().split(/\s+/))
    .filter((f) => f.length > 7 && f[1] !== '00000000')
    .map((f) => [le(f[1] ?? '0'), le(f[7] ?? '0')]);
}

/**
 * A /24 in 10.200.0.0-10.239.255.0 that no host route overlaps, picked at random so test files
 * running at the same time (and the host's own 10.88/16 default) do not share one.
 */
function freeSubnet(): string {
  const taken = routes();
  for (let i = 0; i < 100; i++) {
    const [a, b] = [200 + randomInt(40), randomInt(256)];
    const net = ((10 << 24) | (a << 16) | (b << 8)) >>> 0;
    const mask = 0xffffff00;
    if (taken.every(([n, m]) => (net & m) >>> 0 !== n && (n & mask) >>> 0 !== net)) {
      return `10.${a}.${b}.0/24`;
    }
  }
  throw new Error('no free /24 in 10.200.0.0/13 for a test CNI network');
}

/**
 * A CNI network of its own under `root` for a test stack's shim: a private conf dir (the shim
 * writes its default conflist there), a unique bridge, a free subnet and a private lease store,
 * so tests never touch /etc/cni/net.d, berth0 or one another's leases.
 */
export function testCniNetwork(root: string, network = 'berth'): TestCniNetwork {
  const bridge = `bt${randomBytes(4).toString('hex')}`;
  const subnet = freeSubnet();
  const dataDir = join(root, 'cni-ipam');
  return {
    settings: {
      cniConfDir: join(root, 'cni-net.d'),
      cniBridge: bridge,
      cniSubnet: subnet,
      cniDataDir: dataDir,
    },
    bridge,
    subnet,
    leaseDir: join(dataDir, network),
    close: async () => {
      await exec('ip', ['link', 'del', bridge]).catch(() => undefined);
      const rule = ['POSTROUTING', '-s', subnet, '!', '-d', subnet, '-m', 'comment'];
      rule.push('--comment', `berth network ${network}`, '-j', 'MASQUERADE');
      // Absent (no pod was ever set up) is fine: -D then fails and there is nothing to do.
      await exec('iptables', ['-w', '-t', 'nat', '-D', ...rule]).catch(() => undefined);
    },
  };
}

/**
 * The script of a test CNI plugin (Node, run as `#!` by this Node): ADD runs `add` (with `fs`, the
 * parsed `conf` and its `prevResult` in scope; it must write a result or exit), DEL runs `del`,
 * and every other command succeeds at once. Tests hold a pod in its ADD, fail its DEL, or note
 * what the plugin was called with (cniRecorder).
 */
export function cniGatePlugin(add: string, del = ''): string {
  return `#!${process.execPath}
const fs = require('node:fs');
let input = '';
process.stdin.on('data', (d) => { input += d; }).on('end', () => {
  const conf = JSON.parse(input);
  if (process.env.CNI_COMMAND === 'DEL') {
${del}
  }
  if (process.env.CNI_COMMAND !== 'ADD') process.exit(0);
${add}
});
`;
}

/**
 * cniGatePlugin bodies that append one JSON line per ADD and DEL to `calls`: `{ command, args,
 * conf }` (CNI_COMMAND, CNI_ARGS or null, the config read on stdin); ADD passes the previous
 * plugin's result on.
 */
export function cniRecorder(calls: string): { add: string; del: string } {
  const note = `  fs.appendFileSync(${JSON.stringify(calls)}, JSON.stringify({ command: process.env.CNI_COMMAND, args: process.env.CNI_ARGS ?? null, conf }) + '\\n');`;
  return {
    add: `${note}\n  process.stdout.write(JSON.stringify({ ...conf.prevResult, cniVersion: conf.cniVersion }));`,
    del: note,
  };
}
