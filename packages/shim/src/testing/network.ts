import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { removeNetns } from '../network/netns.js';

const exec = promisify(execFile);

/** A throwaway place for one test file: roots, conf dir, host-local data dir and a unique bridge. */
export interface NetWorld {
  dir: string;
  layout: { stateRoot: string; runRoot: string };
  confDir: string;
  dataDir: string;
  bridge: string;
  close(): Promise<void>;
}

/** Makes a NetWorld; close() removes its bridge and files (pods must be torn down by the test). */
export async function netWorld(tag: string): Promise<NetWorld> {
  const dir = await mkdtemp(join(tmpdir(), `berth-net-${tag}-`));
  const bridge = `bt${randomBytes(4).toString('hex')}`;
  return {
    dir,
    layout: { stateRoot: join(dir, 'state'), runRoot: join(dir, 'run') },
    confDir: join(dir, 'net.d'),
    dataDir: join(dir, 'ipam'),
    bridge,
    close: async () => {
      // A failed test may leave pinned namespaces: unmount them, or the rm below fails with EBUSY.
      const netns = join(dir, 'run', 'netns');
      for (const name of await filesOf(netns)) await removeNetns(join(netns, name));
      await exec('ip', ['link', 'del', bridge]).catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** A unique pod id. */
export function podId(tag: string): string {
  return `${tag}-${randomBytes(4).toString('hex')}`;
}

/** True when a path exists. */
export async function present(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

/** Files of a directory, empty when it does not exist. */
export async function filesOf(dir: string): Promise<string[]> {
  return readdir(dir).catch(() => []);
}

/** The nat and filter rules iptables holds now (iptables-save), one line each. */
export async function iptablesLines(): Promise<string[]> {
  const { stdout } = await exec('iptables-save');
  return stdout.split('\n');
}

/**
 * Names of the per-pod CNI-* chains that rules mentioning `id` jump to or live in; portmap's
 * CNI-HOSTPORT-* chains are shared by every pod and stay, by design.
 */
export function chainsOf(lines: string[], id: string): string[] {
  const names = new Set<string>();
  for (const l of lines.filter((x) => x.includes(`id: \\"${id}\\"`) || x.includes(`id: "${id}"`))) {
    for (const m of l.matchAll(/CNI-[A-Za-z0-9-]+/g)) if (!m[0].startsWith('CNI-HOSTPORT-')) names.add(m[0]);
  }
  return [...names];
}

/** A TCP server inside a network namespace that answers every connection with `reply`. */
export async function serveIn(netns: string, port: number, reply: string): Promise<ChildProcess> {
  const script = `require('net').createServer((s)=>s.end(process.env.REPLY)).listen(${port},'0.0.0.0',()=>console.log('ready'))`;
  const child = spawn('nsenter', [`--net=${netns}`, process.execPath, '-e', script], {
    env: { ...process.env, REPLY: reply },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  await new Promise<void>((resolve, reject) => {
    let err = '';
    child.stderr?.on('data', (b: Buffer) => {
      err += b.toString();
    });
    child.stdout?.on('data', (b: Buffer) => {
      if (b.toString().includes('ready')) resolve();
    });
    child.on('exit', (code) => reject(new Error(`server in ${netns} exited ${code}: ${err}`)));
  });
  return child;
}

/** Connects from inside a namespace to host:port and returns what the server sent. */
export async function fetchIn(netns: string, host: string, port: number): Promise<string> {
  const script = `const s=require('net').connect(${port},'${host}');let d='';s.on('data',(b)=>d+=b);s.on('end',()=>process.stdout.write(d));s.on('error',(e)=>{console.error(e.message);process.exit(1)});s.setTimeout(5000,()=>{console.error('timeout');process.exit(2)})`;
  const { stdout } = await exec('nsenter', [`--net=${netns}`, process.execPath, '-e', script]);
  return stdout;
}

/** Connects from the host to host:port and returns what the server sent. */
export function fetchHost(host: string, port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect(port, host);
    let d = '';
    s.on('data', (b) => {
      d += b.toString();
    });
    s.on('end', () => resolve(d));
    s.on('error', reject);
    s.setTimeout(5000, () => {
      s.destroy();
      reject(new Error(`no answer from ${host}:${port} within 5 s`));
    });
  });
}

/**
 * Writes a plugin that hangs on ADD (after touching `marker`, so a test can wait for it to
 * have started; it holds its pid) and succeeds on DEL/CHECK: a stand-in for a plugin stuck on a lock or a network.
 */
export async function hangPlugin(dir: string, marker: string): Promise<void> {
  const script = `#!/bin/sh\ncat >/dev/null\nif [ "$CNI_COMMAND" = ADD ]; then echo $$ > '${marker}'; exec sleep 3600; fi\nexit 0\n`;
  await writeFile(join(dir, 'hang'), script);
  await chmod(join(dir, 'hang'), 0o755);
}

/** Polls a real condition until it holds, failing after `ms`. */
export async function until(what: string, cond: () => Promise<boolean>, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}
