/**
 * CLI start-up benchmark (issue 11): wall time of short `berth` commands against a private stack,
 * beside `ctr` of a private containerd when it is installed, and `berth run --rm IMAGE true`
 * beside `ctr run --rm`. Prints figures; asserts nothing.
 * `berth` is run as users run it: the client (packages/cli/dist/berth, from native/berth.c) through
 * a symbolic link, as scripts/setup.sh installs /usr/local/bin/berth, with this node first on PATH.
 * Env: BENCH_N runs per command (default 30), BENCH_RUN_N runs of `run --rm` (default BENCH_N),
 * BENCH_BEFORE another build's command (e.g. main's bin and dist/bundle copied out; a `.js` file is
 * run with node): each berth command is then timed alternately with it, against the same stack,
 * and printed as a second row.
 * The rows without `(up, ...)` run against services started one by one, with no `berth up`
 * supervisor to serve anything: the client runs every command on Node. The `(up, ...)` rows run on
 * a stack of `berth up`, served by its supervisor (packages/cli/src/served.ts) and run by the
 * client itself (BERTH_CLI_LOCAL=1), alternately.
 * BENCH_ONLY=run times only `node -e 0` and the `run --rm` rows of both sides (and skips the
 * listings and their ratios).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, symlinkSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { connectNats } from '@berth/kit/nats';
import { importBusyboxTo, startContainerStack } from '../tests/e2e/containers-stack.js';
import { BERTH_BIN, BERTH_LAUNCHER } from '../tests/harness/berth.js';
import { startStack } from '../tests/harness/stack.js';
import { containerdInstalled, startContainerd } from './containerd.js';
import { pct } from './measure.js';

const N = Number(process.env.BENCH_N ?? 30);
const RUN_N = Number(process.env.BENCH_RUN_N ?? N);
const ONLY_RUN = process.env.BENCH_ONLY === 'run';

/** One run's wall and CPU (user + system) time in ms. */
interface Sample {
  wall: number;
  cpu: number;
}

/** One command line: the program and its arguments (per run, for names that must differ). */
interface Variant {
  cmd: string;
  args: string[] | ((i: number) => string[]);
}

/**
 * N runs of each variant after one warm-up run each, the variants alternating run by run so a
 * change of load hits all alike; fails on a non-zero exit. CPU time comes from /usr/bin/time when
 * it is there: on a loaded host it moves far less than the wall time.
 */
function timeAll(variants: Variant[], env: NodeJS.ProcessEnv, n = N): Sample[][] {
  const timed = existsSync('/usr/bin/time');
  let runs = 0;
  const once = ({ cmd, args }: Variant): Sample => {
    const argv = typeof args === 'function' ? args(runs++) : args;
    const a = performance.now();
    const r = timed
      ? spawnSync('/usr/bin/time', ['-f', '@cpu %U %S', cmd, ...argv], {
          env,
          stdio: ['ignore', 'ignore', 'pipe'],
        })
      : spawnSync(cmd, argv, { env, stdio: ['ignore', 'ignore', 'pipe'] });
    const wall = performance.now() - a;
    if (r.status !== 0) throw new Error(`${cmd} ${argv.join(' ')} exited ${r.status}: ${r.stderr}`);
    const m = /@cpu ([\d.]+) ([\d.]+)/.exec(r.stderr.toString());
    return { wall, cpu: m ? (Number(m[1]) + Number(m[2])) * 1000 : Number.NaN };
  };
  for (const v of variants) once(v);
  const out = variants.map(() => [] as Sample[]);
  for (let i = 0; i < n; i++) {
    for (const [j, v] of variants.entries()) out[j]?.push(once(v));
  }
  return out;
}

/** N runs of one command after a warm-up run (see timeAll). */
function time(
  cmd: string,
  args: string[] | ((i: number) => string[]),
  env: NodeJS.ProcessEnv,
  n = N,
): Sample[] {
  return timeAll([{ cmd, args }], env, n)[0] ?? [];
}

/** Another build of the CLI to time alternately with this one (BENCH_BEFORE). */
const BEFORE = process.env.BENCH_BEFORE;

const f = (n: number) => n.toFixed(1).padStart(7);
const row = (name: string, xs: Sample[]) => {
  const wall = xs.map((x) => x.wall);
  const cpu = xs.map((x) => x.cpu);
  process.stdout.write(
    `${name.padEnd(34)} wall median ${f(pct(wall, 50))} ms  p90 ${f(pct(wall, 90))} ms   cpu median ${f(pct(cpu, 50))} ms\n`,
  );
  return wall;
};

const loadavg = () => execFileSync('cat', ['/proc/loadavg']).toString().split(' ').slice(0, 3).join(' ');

/** The served rows' medians' inputs (wall ms), by command. */
interface Served {
  help: number[];
  ps: number[];
  images: number[];
  run: number[];
  runNoNet: number[];
}

/**
 * The commands the `berth up` supervisor serves for the `berth` client (packages/cli/src/served.ts)
 * on a stack of `berth up`, each timed alternately with the client running it on Node itself
 * (BERTH_CLI_LOCAL=1); the same three containers and one image as the other rows.
 */
async function servedCommands(berthCmd: string, image: string, listings: boolean): Promise<Served> {
  const up = await startStack();
  try {
    const nc = await connectNats({ url: up.natsUrl, name: 'bench-cli' });
    try {
      await importBusyboxTo(nc, { dir: up.root, node: up.nodeId, namespace: 'default', name: image });
    } finally {
      await nc.close();
    }
    for (let i = 0; i < 3; i++) await up.berth('create', '--name', `bench-${i}`, image, 'true');
    const env: NodeJS.ProcessEnv = { ...up.env, PATH: `${dirname(process.execPath)}:${up.env.PATH ?? ''}` };
    const both = (name: string, args: string[], n = N) => {
      const [served = [], own = []] = timeAll(
        [
          { cmd: berthCmd, args },
          { cmd: 'env', args: ['BERTH_CLI_LOCAL=1', berthCmd, ...args] },
        ],
        env,
        n,
      );
      row(`${name} (up, by itself)`, own);
      return row(`${name} (up, served)`, served);
    };
    const help = listings ? both('berth --help', ['--help']) : [];
    const ps = listings ? both('berth ps -a', ['ps', '-a']) : [];
    const images = listings ? both('berth images', ['images']) : [];
    const run = both('berth run --rm true', ['run', '--rm', image, 'true'], RUN_N);
    const runNoNet = both(
      'berth run --rm --net none',
      ['run', '--rm', '--network', 'none', image, 'true'],
      RUN_N,
    );
    return { help, ps, images, run, runNoNet };
  } finally {
    await up.berth('rm', '-f', 'bench-0', 'bench-1', 'bench-2').catch(() => undefined);
    await up.stop();
  }
}

const s = await startContainerStack();
try {
  // The command as users have it: a link on PATH to the client, which runs `node` from PATH.
  const berthCmd = join(s.root, 'berth');
  symlinkSync(BERTH_LAUNCHER, berthCmd);
  const env: NodeJS.ProcessEnv = { ...s.env, PATH: `${dirname(process.execPath)}:${s.env.PATH ?? ''}` };
  const cli = (bin: string, args: string[]): Variant =>
    bin.endsWith('.js') ? { cmd: process.execPath, args: [bin, ...args] } : { cmd: bin, args };
  const image = (await s.importBusybox('berth.bench/busybox:latest')).name;
  // Something to list: three created containers.
  for (let i = 0; i < 3; i++) await s.berth(['create', '--name', `bench-${i}`, image, 'true']);
  process.stdout.write(`node ${process.version}, ${N} runs each, load average ${loadavg()}\n`);
  row('node -e 0', time(process.execPath, ['-e', '0'], env));
  // Node 20 reads and parses the certificates NODE_EXTRA_CA_CERTS names before any JavaScript
  // runs (~60 ms here for a 140-certificate bundle). The launcher starts node without it.
  const { NODE_EXTRA_CA_CERTS: extraCa, ...bare } = env;
  if (extraCa) {
    row('node -e 0 (no NODE_EXTRA_CA_CERTS)', time(process.execPath, ['-e', '0'], bare));
    process.stdout.write(
      `NODE_EXTRA_CA_CERTS is set: the berth client moves it away${BEFORE?.endsWith('.js') ? ', node on BENCH_BEFORE pays for it' : ''}\n`,
    );
  }
  // The client's own cost when it runs the command on Node: it against node on berth.js.
  const [viaLauncher = [], direct = []] = timeAll(
    [cli(berthCmd, ['--version']), cli(BERTH_BIN, ['--version'])],
    bare,
  );
  row('berth --version (client, no up)', viaLauncher);
  row('node berth.js --version (no var)', direct);
  // This build's row (returned), and BENCH_BEFORE's timed alternately with it.
  const berth = (name: string, args: string[], n = N) => {
    const bins = [berthCmd, ...(BEFORE ? [BEFORE] : [])];
    const [after = [], before] = timeAll(
      bins.map((bin) => cli(bin, args)),
      env,
      n,
    );
    if (before) row(`${name} (before)`, before);
    return row(name, after);
  };
  const listings = !ONLY_RUN;
  if (listings) {
    berth('berth --version', ['--version']);
    berth('berth --help', ['--help']);
  }
  const ps = listings ? berth('berth ps -a', ['ps', '-a']) : [];
  const images = listings ? berth('berth images', ['images']) : [];
  const served = await servedCommands(berthCmd, image, listings);
  const run = berth('berth run --rm true', ['run', '--rm', image, 'true'], RUN_N);
  // ctr run gives the container a network namespace without interfaces; berth's default is the
  // bridge network (CNI add and del per run). --network none is the same work as ctr's.
  const runNoNet = berth(
    'berth run --rm --net none',
    ['run', '--rm', '--network', 'none', image, 'true'],
    RUN_N,
  );

  if (containerdInstalled()) {
    const ctd = await startContainerd(join(s.root, 'containerd'));
    try {
      execFileSync(
        'ctr',
        ['-a', ctd.sock, 'images', 'import', '--index-name', image, join(s.root, 'busybox-oci.tar')],
        {
          stdio: 'ignore',
        },
      );
      for (let i = 0; i < 3; i++)
        execFileSync('ctr', ['-a', ctd.sock, 'containers', 'create', image, `bench-${i}`, 'true']);
      const cps = listings
        ? row('ctr containers ls', time('ctr', ['-a', ctd.sock, 'containers', 'ls'], env))
        : [];
      const cimg = listings ? row('ctr images ls', time('ctr', ['-a', ctd.sock, 'images', 'ls'], env)) : [];
      const crun = row(
        'ctr run --rm true',
        time('ctr', (i) => ['-a', ctd.sock, 'run', '--rm', image, `bench-run-${i}`, 'true'], env, RUN_N),
      );
      // ctr run applies no seccomp filter unless asked; berth's default profile (the same one
      // containerd's --seccomp applies) is part of every `runc create` of berth's.
      const crunSeccomp = row(
        'ctr run --rm --seccomp true',
        time(
          'ctr',
          (i) => ['-a', ctd.sock, 'run', '--rm', '--seccomp', image, `bench-sec-${i}`, 'true'],
          env,
          RUN_N,
        ),
      );
      const ratio = (a: number[], b: number[]) => (pct(a, 50) / pct(b, 50)).toFixed(2);
      if (listings)
        process.stdout.write(
          `ratio (median): berth ps / ctr containers ls ${ratio(ps, cps)}x, berth images / ctr images ls ${ratio(images, cimg)}x\n`,
        );
      if (listings)
        process.stdout.write(
          `ratio (median), served by berth up: berth ps / ctr containers ls ${ratio(served.ps, cps)}x, berth images / ctr images ls ${ratio(served.images, cimg)}x\n`,
        );
      process.stdout.write(
        `ratio (median), served by berth up: berth run --rm / ctr run --rm ${ratio(served.run, crun)}x (--network none: ${ratio(served.runNoNet, crun)}x; against ctr run --rm --seccomp ${ratio(served.run, crunSeccomp)}x, --network none ${ratio(served.runNoNet, crunSeccomp)}x)\n`,
      );
      process.stdout.write(
        `ratio (median): berth run --rm / ctr run --rm ${ratio(run, crun)}x (--network none: ${ratio(runNoNet, crun)}x; against ctr run --rm --seccomp ${ratio(run, crunSeccomp)}x, --network none ${ratio(runNoNet, crunSeccomp)}x)\n`,
      );
    } finally {
      await ctd.stop();
    }
  } else {
    process.stdout.write('containerd is not installed: no ctr comparison in this run\n');
  }
  process.stdout.write(`load average at the end ${loadavg()}\n`);
} finally {
  await s.berth(['rm', '-f', 'bench-0', 'bench-1', 'bench-2']);
  await s.stop();
}
