/**
 * StartContainer's floor (issue 9): what runc and conmon alone cost for the work under a CRI
 * StartContainer, with no berth service in the way. Prints figures; asserts nothing.
 * On one prepared busybox bundle (`runc spec`, args `top`, terminal false, a runc --root and a
 * cgroup parent of its own), in interleaved rounds (each row once per round, the order rotated):
 *  (0) Node's spawn of /bin/true to its exit: the part of every row below that is Node's own
 *  (1) `runc create` run directly, stdio pipes, timed to runc's exit; from the binary and, when
 *      the shim's sealed addon is built, from the sealed in-memory copy the shim runs it from
 *  (2) conmon running that `runc create` with the shim's arguments and environment, timed to
 *      conmon's sync message (the init's pid), plain and sealed runc as in (1)
 *  (3) conmon with a no-op runtime (a static C program compiled here with gcc that only writes its
 *      --pid-file), beside that no-op run directly: conmon's own cost
 *  (4) starting a created container: through runc's exec fifo as the shim does (open, read to end
 *      of file, unlink) and with `runc start` as a process, as containerd's shim runs it
 * Each container is force-deleted after its sample (untimed); everything made is removed at the end.
 * Every row is spawned by Node (the shim starts conmon with its spawn addon instead): subtract (0)
 * to compare with a C harness. conmon's arguments are the shim's own (conmonArgs of @berth/shim);
 * the sealed copy is the shim's own addon
 * (packages/shim/build/sealed.node, loaded by path).
 * Before each sample the script sleeps BENCH_SETTLE_MS, so the previous sample's deletion (the killed
 * init, conmon writing its exit file and leaving, the cgroup's removal) is not timed with it.
 * Env: BENCH_N (rounds, default 30), BENCH_SETTLE_MS (default 20), BENCH_CONMON (default conmon),
 * BENCH_RUNC (default runc).
 */
import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, constants, existsSync, openSync, readdirSync, readFileSync, rmdirSync } from 'node:fs';
import { copyFile, mkdir, readFile, rm, symlink, unlink, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { Socket } from 'node:net';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { type ConmonOptions, conmonArgs } from '@berth/shim';
import { tempDir } from '@berth/testing';
import { pct } from './measure.js';

const N = Number(process.env.BENCH_N ?? 30);
const CONMON = process.env.BENCH_CONMON ?? 'conmon';
const RUNC = process.env.BENCH_RUNC ?? 'runc';
const SETTLE_MS = Number(process.env.BENCH_SETTLE_MS ?? 20);
const NS = 'bench';

const f = (n: number) => n.toFixed(1);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Full path of a command on PATH (conmon's -r and the sealed copy want one). */
function which(cmd: string): string {
  if (cmd.includes('/')) return cmd;
  return execFileSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' }).trim();
}

/** The shim's cuuid: a short stable id naming the attach socket's link (domain/paths.ts). */
function cuuid(...parts: string[]): string {
  return createHash('sha256').update(parts.join('/')).digest('hex').slice(0, 16);
}

/** Spawns a command with stdin ignored and stdout/stderr pipes; ms to its exit, and how it ended. */
function timedRun(cmd: string, args: string[]): Promise<{ ms: number; code: number | null; err: string }> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (s: string) => {
      if (err.length < 4096) err += s;
    });
    child.stdout.resume();
    child.on('error', reject);
    // 'exit', not 'close': a created container's init holds the pipes' write ends.
    child.on('exit', (code) => {
      const ms = performance.now() - t0;
      child.stdout.destroy();
      child.stderr.destroy();
      resolve({ ms, code, err });
    });
  });
}

/** The first newline-terminated line on a stream, or an error when it ends first or times out. */
function firstLine(stream: Readable, timeoutMs: number, what: () => string): Promise<string> {
  return new Promise((resolve, reject) => {
    let buf = '';
    const timer = setTimeout(
      () => done(new Error(`no sync message in ${timeoutMs} ms: ${what()}`)),
      timeoutMs,
    );
    const done = (err: Error | undefined, line?: string) => {
      clearTimeout(timer);
      stream.removeAllListeners('data');
      stream.removeAllListeners('end');
      if (err) reject(err);
      else resolve(line as string);
    };
    stream.setEncoding('utf8');
    stream.on('data', (s: string) => {
      buf += s;
      const nl = buf.indexOf('\n');
      if (nl >= 0) done(undefined, buf.slice(0, nl));
    });
    stream.on('end', () => done(new Error(`conmon closed its sync pipe: ${what()}`)));
    stream.on('error', () => undefined);
  });
}

/** Polls until the process is gone (or a zombie); SIGKILL after `ms`. */
async function gone(pid: number, ms = 2000): Promise<void> {
  const until = performance.now() + ms;
  for (;;) {
    let state: string | undefined;
    try {
      state = readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /s, '')[0];
    } catch {
      return;
    }
    if (state === 'Z') return;
    if (performance.now() > until) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone meanwhile
      }
      return;
    }
    await sleep(2);
  }
}

/** Starts a created container through runc's exec fifo as the shim's startThroughFifo does. */
async function startThroughFifo(runcRoot: string, id: string): Promise<void> {
  const path = join(runcRoot, id, 'exec.fifo');
  const fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  const fifo = new Socket({ fd, readable: true, writable: false });
  let got = 0;
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${id}: no byte on exec.fifo in 10 s`)), 10_000);
      fifo.on('data', (b: Buffer) => {
        got += b.length;
      });
      fifo.on('error', (e) => {
        clearTimeout(timer);
        reject(e);
      });
      fifo.on('end', () => {
        clearTimeout(timer);
        if (got > 0) resolve();
        else reject(new Error(`${id}: exec.fifo ended with no byte`));
      });
    });
  } finally {
    fifo.destroy();
  }
  await unlink(path);
}

const NOOP_C = `#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
/* A no-op OCI "runtime": writes its own pid to --pid-file and exits 0. */
int main(int argc, char **argv) {
  const char *pf = 0;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--pid-file") && i + 1 < argc) pf = argv[i + 1];
    else if (!strncmp(argv[i], "--pid-file=", 11)) pf = argv[i] + 11;
  }
  if (pf) {
    char b[32];
    int n = snprintf(b, sizeof b, "%d", (int)getpid());
    int fd = open(pf, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || write(fd, b, (size_t)n) != n) return 1;
    close(fd);
  }
  return 0;
}
`;

interface Row {
  name: string;
  samples: number[];
  run: (round: number) => Promise<number>;
}

async function main(): Promise<void> {
  const work = await tempDir('start-floor');
  const runcRoot = join(work, 'runc');
  const rootfs = join(work, 'rootfs');
  const cgParent = `berth-floor-${process.pid}`;
  const conmonPids = new Set<number>();
  const sealedFds: number[] = [];
  let stop = false;
  const onSigint = () => {
    stop = true;
  };
  process.on('SIGINT', onSigint);
  const runcPath = which(RUNC);
  const conmonPath = which(CONMON);
  const runcDelete = (id: string) =>
    spawnSync(runcPath, ['--root', runcRoot, 'delete', '-f', id], { stdio: 'ignore', timeout: 30_000 });
  try {
    // The bundle: busybox with its links, runc's default spec running top.
    for (const d of ['bin', 'proc', 'sys', 'dev', 'tmp', 'etc'])
      await mkdir(join(rootfs, d), { recursive: true });
    await copyFile('/usr/bin/busybox', join(rootfs, 'bin', 'busybox'));
    for (const a of ['sh', 'top', 'true', 'sleep']) await symlink('busybox', join(rootfs, 'bin', a));
    const specDir = join(work, 'spec');
    await mkdir(specDir);
    execFileSync(runcPath, ['spec', '--bundle', specDir]);
    const base = JSON.parse(await readFile(join(specDir, 'config.json'), 'utf8')) as {
      process: Record<string, unknown>;
      root: Record<string, unknown>;
      linux: Record<string, unknown>;
    };
    base.process.args = ['top'];
    base.process.terminal = false;
    base.root = { path: rootfs, readonly: false };
    await mkdir(runcRoot);
    /** A fresh bundle directory for one container (untimed, as the shim writes it before conmon). */
    const bundle = async (id: string): Promise<string> => {
      const dir = join(work, 'b', id);
      await mkdir(dir, { recursive: true });
      base.linux.cgroupsPath = `/${cgParent}/${id}`;
      await writeFile(join(dir, 'config.json'), JSON.stringify(base));
      return dir;
    };

    // The shim's sealed copy of runc (its own addon), and the no-op runtime.
    let sealedRunc: string | undefined;
    let sealedWhy = '';
    try {
      const addon = createRequire(import.meta.url)('../packages/shim/build/sealed.node') as {
        sealedCopy(path: string): Promise<number>;
      };
      const fd = await addon.sealedCopy(runcPath);
      sealedFds.push(fd);
      sealedRunc = `/proc/${process.pid}/fd/${fd}`;
    } catch (err) {
      sealedWhy = `no sealed copy (${(err as Error).message.split('\n')[0]})`;
    }
    let noop: string | undefined;
    let noopWhy = '';
    if (spawnSync('sh', ['-c', 'command -v gcc'], { stdio: 'ignore' }).status === 0) {
      await writeFile(join(work, 'noop.c'), NOOP_C);
      const cc = spawnSync('gcc', ['-O2', '-static', '-o', join(work, 'noop'), join(work, 'noop.c')], {
        encoding: 'utf8',
      });
      if (cc.status === 0) noop = join(work, 'noop');
      else noopWhy = `gcc -static failed: ${(cc.stderr || '').trim().split('\n')[0]}`;
    } else noopWhy = 'no gcc on PATH';
    const help = spawnSync(conmonPath, ['--help'], { encoding: 'utf8' });
    const noSyncLog = /--no-sync-log\b/.test(`${help.stdout}${help.stderr}`);

    let seq = 0;
    /** conmon running `runtime create` as the shim runs it: ms to its sync message. */
    const conmonCreate = async (runtime: string, tag: string, real: boolean): Promise<number> => {
      const id = `${tag}-${seq++}`;
      const dir = await bundle(id);
      const exitDir = join(work, 'exits');
      const o: ConmonOptions = {
        conmon: conmonPath,
        runc: runtime,
        runcRoot,
        cid: id,
        cuuid: cuuid(NS, id),
        dir,
        pidFile: join(dir, 'pid'),
        conmonPidFile: join(dir, 'conmon.pid'),
        logPath: join(work, 'logs', `${id}.log`),
        persistDir: join(work, 'persist', id),
        exitDir,
        socketDir: join(work, 's'),
        terminal: false,
        stdin: false,
        noSyncLog,
      };
      await mkdir(o.persistDir, { recursive: true });
      await mkdir(o.socketDir, { recursive: true });
      await mkdir(exitDir, { recursive: true });
      await mkdir(join(work, 'logs'), { recursive: true });
      await writeFile(o.logPath, '');
      const env = { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', _OCI_SYNCPIPE: '3' };
      let out = '';
      const t0 = performance.now();
      const child: ChildProcess = spawn(conmonPath, conmonArgs(o), {
        stdio: ['ignore', 'pipe', 'pipe', 'pipe'],
        env,
        detached: true,
        cwd: dir,
      });
      for (const s of [child.stdout, child.stderr]) {
        s?.setEncoding('utf8');
        s?.on('data', (x: string) => {
          if (out.length < 4096) out += x;
        });
      }
      const sync = (child.stdio as unknown as Readable[])[3] as Readable;
      let line: string;
      try {
        line = await firstLine(sync, 10_000, () => out.trim());
      } finally {
        sync.destroy();
        child.stdout?.destroy();
        child.stderr?.destroy();
        child.unref();
      }
      const ms = performance.now() - t0;
      const msg = JSON.parse(line) as { data: number; message?: string };
      let monitor = 0;
      try {
        monitor = Number(readFileSync(o.conmonPidFile, 'utf8').trim());
        conmonPids.add(monitor);
      } catch {
        // conmon gone already
      }
      if (msg.data <= 0) throw new Error(`conmon: ${tag} create failed: ${msg.message ?? line}`);
      if (real) runcDelete(id);
      else if (monitor > 0) {
        // Nothing to delete: conmon watches a pid that was never a container; stop it.
        try {
          process.kill(monitor, 'SIGKILL');
        } catch {
          // gone
        }
      }
      if (monitor > 0) {
        await gone(monitor);
        conmonPids.delete(monitor);
      }
      await rm(dir, { recursive: true, force: true });
      await rm(o.persistDir, { recursive: true, force: true });
      return ms;
    };
    /** `runc create` run directly: ms to its exit. */
    const directCreate = async (
      runtime: string,
      tag: string,
      keep = false,
    ): Promise<{ ms: number; id: string }> => {
      const id = `${tag}-${seq++}`;
      const dir = await bundle(id);
      const r = await timedRun(runtime, [
        '--root',
        runcRoot,
        'create',
        '--bundle',
        dir,
        '--pid-file',
        join(dir, 'pid'),
        id,
      ]);
      if (r.code !== 0) throw new Error(`runc create ${id} failed (${r.code}): ${r.err.trim()}`);
      if (!keep) {
        runcDelete(id);
        await rm(dir, { recursive: true, force: true });
      }
      return { ms: r.ms, id };
    };
    /** A created container (untimed), started by `how` (timed), then deleted. */
    const timedStart = async (how: (id: string) => Promise<number>): Promise<number> => {
      const { id } = await directCreate(runcPath, 'start', true);
      try {
        return await how(id);
      } finally {
        runcDelete(id);
        await rm(join(work, 'b', id), { recursive: true, force: true });
      }
    };

    const rows: Row[] = [
      {
        name: '(0) node spawn /bin/true',
        samples: [],
        run: async () => {
          const r = await timedRun('/bin/true', []);
          return r.ms;
        },
      },
      {
        name: '(1) runc create, direct',
        samples: [],
        run: async () => (await directCreate(runcPath, 'rc')).ms,
      },
      {
        name: '(2) conmon + runc create',
        samples: [],
        run: () => conmonCreate(runcPath, 'cm', true),
      },
    ];
    if (sealedRunc) {
      const s = sealedRunc;
      rows.push(
        {
          name: '(1s) runc create, direct, sealed copy',
          samples: [],
          run: async () => (await directCreate(s, 'rcs')).ms,
        },
        {
          name: "(2s) conmon + runc create, sealed (the shim's path)",
          samples: [],
          run: () => conmonCreate(s, 'cms', true),
        },
      );
    }
    if (noop) {
      const n = noop;
      rows.push(
        {
          name: '(3a) no-op runtime, direct',
          samples: [],
          run: async () => {
            const pidFile = join(work, 'noop.pid');
            const r = await timedRun(n, ['create', '--bundle', work, '--pid-file', pidFile, 'x']);
            if (r.code !== 0) throw new Error(`no-op exited ${r.code}`);
            return r.ms;
          },
        },
        {
          name: '(3b) conmon + no-op runtime',
          samples: [],
          run: () => conmonCreate(n, 'noop', false),
        },
      );
    }
    rows.push(
      {
        name: '(4a) start through exec.fifo',
        samples: [],
        run: () =>
          timedStart(async (id) => {
            const t0 = performance.now();
            await startThroughFifo(runcRoot, id);
            return performance.now() - t0;
          }),
      },
      {
        name: '(4b) runc start, process',
        samples: [],
        run: () =>
          timedStart(async (id) => {
            const r = await timedRun(runcPath, ['--root', runcRoot, 'start', id]);
            if (r.code !== 0) throw new Error(`runc start ${id} failed (${r.code}): ${r.err.trim()}`);
            return r.ms;
          }),
      },
    );

    const load = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
    const ver = (cmd: string) => spawnSync(cmd, ['--version'], { encoding: 'utf8' }).stdout.split('\n')[0];
    console.log(
      `StartContainer floor: N=${N} rounds, settle ${SETTLE_MS} ms, ${ver(runcPath)}, ${ver(conmonPath)}, node ${process.version}, load ${load}`,
    );
    if (!sealedRunc) console.log(`  rows (1s), (2s) skipped: ${sealedWhy}`);
    if (!noop) console.log(`  rows (3a), (3b) skipped: ${noopWhy}`);
    // One untimed round first: page cache, the cgroup parent, conmon's first run.
    for (const row of rows) await row.run(-1);
    for (let round = 0; round < N && !stop; round++) {
      for (let k = 0; k < rows.length && !stop; k++) {
        const row = rows[(round + k) % rows.length] as Row;
        await sleep(SETTLE_MS);
        row.samples.push(await row.run(round));
      }
    }
    console.log(`\nms, ${rows[0]?.samples.length ?? 0} samples each (interleaved rounds):`);
    const w = Math.max(...rows.map((r) => r.name.length));
    console.log(`  ${'row'.padEnd(w)}   p10    p50    p90    min`);
    for (const r of rows) {
      const s = r.samples;
      console.log(
        `  ${r.name.padEnd(w)} ${[pct(s, 10), pct(s, 50), pct(s, 90), Math.min(...s)].map((x) => f(x).padStart(6)).join(' ')}`,
      );
    }
    const row = (name: string) => rows.find((x) => x.name.startsWith(`${name} `));
    const med = (name: string) => {
      const r = row(name);
      return r ? pct(r.samples, 50) : Number.NaN;
    };
    // Sample i of every row is from round i: the paired difference leaves out drifts between rounds.
    const diff = (label: string, a: string, b: string) => {
      const ra = row(a);
      const rb = row(b);
      if (!ra || !rb) return;
      const paired = ra.samples.map((x, i) => x - (rb.samples[i] as number));
      console.log(
        `  ${label}: ${f(med(a) - med(b))} ms (p50 ${a} - p50 ${b}); paired by round: p50 ${f(pct(paired, 50))} p10 ${f(pct(paired, 10))} p90 ${f(pct(paired, 90))}`,
      );
    };
    console.log('\ndifferences, ms:');
    diff("conmon's cost around runc create", '(2)', '(1)');
    diff("conmon's cost around runc create, sealed", '(2s)', '(1s)');
    diff("conmon's own cost (no-op runtime)", '(3b)', '(3a)');
    diff('runc create from the binary vs its sealed copy', '(1)', '(1s)');
    diff('conmon + runc, plain vs sealed', '(2)', '(2s)');
    diff('runc start process vs exec.fifo', '(4b)', '(4a)');
    diff('no-op runtime direct vs node spawn /bin/true', '(3a)', '(0)');
    const shim = sealedRunc ? med('(2s)') : med('(2)');
    console.log(
      `\nfloor of the shim's create+start: ${f(shim + med('(4a)'))} ms (p50 ${sealedRunc ? '(2s)' : '(2)'} + p50 (4a)); node's spawn in it: ~${f(med('(0)'))} ms`,
    );
  } finally {
    process.off('SIGINT', onSigint);
    // Whatever is left: containers, monitors, the sealed copy, cgroups, files.
    const left = spawnSync(runcPath, ['--root', runcRoot, 'list', '-q'], { encoding: 'utf8' });
    for (const id of (left.stdout ?? '').split('\n').filter(Boolean)) runcDelete(id);
    for (const pid of conmonPids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
    for (const fd of sealedFds) closeSync(fd);
    if (existsSync('/sys/fs/cgroup')) {
      const dirs = [join('/sys/fs/cgroup', cgParent)];
      for (const c of readdirSync('/sys/fs/cgroup')) dirs.push(join('/sys/fs/cgroup', c, cgParent));
      for (const d of dirs) {
        try {
          rmdirSync(d);
        } catch {
          // absent, or not a cgroup directory
        }
      }
    }
    await rm(work, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
