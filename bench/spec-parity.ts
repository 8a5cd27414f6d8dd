/**
 * Where berth's OCI specs differ from containerd's for the same CRI requests: a private trace
 * stack (cri-trace-stack.ts) and a private containerd 1.6 (containerd.ts) side by side, each case a
 * pod and a container run through crictl on both, then the config.json runc got for the pause and
 * the container, compared field by field after what must differ is set aside (ids, paths,
 * annotations, namespace paths, the order of env, mounts and capabilities; a seccomp filter is
 * compared by its default action and the syscalls of each action). Prints the differences of each
 * case; asserts nothing. A difference is a question (is it containerd's or ours that is right?),
 * not a verdict: the first run of this found berth leaving the primary group out of
 * additionalGids (CVE-2023-25173).
 * Run: CRICTL=/path/to/crictl pnpm --filter @berth/bench run spec-parity
 * Env: CRICTL (required, cri-tools v1.26.1), REGISTRY (default 127.0.0.1:5000, serving the e2e
 * busybox and the pause image, as the CRI benchmark's), CASES (comma-separated names: a subset).
 */
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { hostLayout } from '@berth/kit';
import { startContainerd } from './containerd.js';
import { BENCH_IMAGES } from './cri-critest.js';
import { freeSubnets, makeNetwork, removeNetwork } from './cri-net.js';
import { crictlBinary, startTraceStack } from './cri-trace-stack.js';

type Obj = Record<string, unknown>;

const [IMAGE] = BENCH_IMAGES as [string];
const REGISTRY = process.env.REGISTRY ?? '127.0.0.1:5000';
const SANDBOX_IMAGE = 'registry.k8s.io/pause:3.6';

/** One CRI request pair: what the pod's and the container's linux sections add to the defaults. */
interface Case {
  name: string;
  pod?: Obj;
  ctr?: Obj;
}

// crictl reads its JSON with Go's encoding/json into the CRI types: snake_case names, enums as
// numbers (NamespaceMode POD 0, CONTAINER 1, NODE 2), wrapped ints as { value }.
const CASES: Case[] = [
  { name: 'default' },
  {
    name: 'user-groups',
    pod: { security_context: { run_as_user: { value: 1000 }, run_as_group: { value: 2000 } } },
    ctr: {
      security_context: {
        run_as_user: { value: 1000 },
        run_as_group: { value: 2000 },
        supplemental_groups: [3000],
      },
    },
  },
  {
    name: 'restricted',
    ctr: {
      security_context: {
        readonly_rootfs: true,
        no_new_privs: true,
        capabilities: { add_capabilities: ['NET_ADMIN'], drop_capabilities: ['CHOWN', 'KILL'] },
        seccomp_profile_path: 'runtime/default',
        masked_paths: ['/proc/kcore', '/proc/keys'],
        readonly_paths: ['/proc/sys'],
      },
    },
  },
  {
    name: 'privileged',
    pod: { security_context: { privileged: true } },
    ctr: { security_context: { privileged: true } },
  },
  {
    name: 'host-namespaces',
    pod: { security_context: { namespace_options: { network: 2, pid: 2, ipc: 2 } } },
    ctr: { security_context: { namespace_options: { network: 2, pid: 2, ipc: 2 } } },
  },
  {
    name: 'resources',
    pod: { sysctls: { 'net.ipv4.ip_unprivileged_port_start': '0' } },
    ctr: {
      resources: {
        cpu_period: 100000,
        cpu_quota: 50000,
        cpu_shares: 512,
        memory_limit_in_bytes: 67108864,
        oom_score_adj: 500,
      },
    },
  },
];

/** A runtime under comparison: crictl on its socket, and where its config.json files are. */
interface Runtime {
  name: string;
  crictl(...args: string[]): string;
  configOf(id: string): Obj;
}

function crictlOn(socket: string): Runtime['crictl'] {
  const bin = crictlBinary();
  return (...args) => {
    const r = spawnSync(
      bin,
      ['--timeout', '60s', '-r', `unix://${socket}`, '-i', `unix://${socket}`, ...args],
      {
        encoding: 'utf8',
      },
    );
    if (r.status !== 0) throw new Error(`crictl ${args.join(' ')}: ${r.stderr.trim()}`);
    return r.stdout.trim();
  };
}

/** Runs one case on `rt`: the pause's and the container's config.json, both removed after. */
function runCase(rt: Runtime, c: Case, dir: string, n: number): { pod: Obj; ctr: Obj } {
  const podFile = join(dir, `${rt.name}-${c.name}-pod.json`);
  const ctrFile = join(dir, `${rt.name}-${c.name}-ctr.json`);
  const hostNet = (c.pod?.security_context as Obj | undefined)?.namespace_options !== undefined;
  writeFileSync(
    podFile,
    JSON.stringify({
      metadata: { name: `parity-${n}`, namespace: 'parity', uid: `parity-uid-${n}`, attempt: 0 },
      hostname: hostNet ? undefined : 'parity',
      log_directory: join(dir, 'logs', `${rt.name}-${n}`),
      linux: c.pod ?? {},
    }),
  );
  writeFileSync(
    ctrFile,
    JSON.stringify({
      metadata: { name: 'c' },
      image: { image: IMAGE },
      command: ['sleep', '3600'],
      log_path: 'c.log',
      linux: c.ctr ?? {},
    }),
  );
  const pod = rt.crictl('runp', podFile);
  try {
    const ctr = rt.crictl('create', pod, ctrFile, podFile);
    rt.crictl('start', ctr);
    return { pod: rt.configOf(pod), ctr: rt.configOf(ctr) };
  } finally {
    rt.crictl('stopp', pod);
    rt.crictl('rmp', pod);
  }
}

/** The spec with what must differ between two runtimes set aside. */
function normalize(spec: Obj): Obj {
  const s = structuredClone(spec) as Obj & { process?: Obj; linux?: Obj; mounts?: Obj[]; root?: Obj };
  delete s.annotations;
  delete s.ociVersion;
  if (s.root) s.root.path = '<rootfs>';
  const p = s.process;
  if (p) {
    if (Array.isArray(p.env)) p.env = [...(p.env as string[])].sort();
    const caps = p.capabilities as Record<string, string[]> | undefined;
    if (caps) for (const k of Object.keys(caps)) caps[k] = [...(caps[k] ?? [])].sort();
  }
  // Keyed by destination (two mounts on one destination keep their order), so one extra mount
  // is one line, not the whole list.
  const mounts: Obj = {};
  for (const m of s.mounts ?? []) {
    const seen = Object.keys(mounts).filter((k) => k.split('#')[0] === m.destination).length;
    const { destination: _d, ...rest } = m;
    mounts[seen ? `${m.destination}#${seen + 1}` : String(m.destination)] =
      m.type === 'bind' && String(m.source).includes('/') ? { ...rest, source: '<file>' } : rest;
  }
  s.mounts = mounts as unknown as Obj[];
  const l = s.linux;
  if (l) {
    l.cgroupsPath = '<cgroup>';
    l.namespaces = ((l.namespaces as Obj[]) ?? [])
      .map((ns) => ('path' in ns ? { ...ns, path: '<joined>' } : ns))
      .sort((a, b) => String(a.type).localeCompare(String(b.type)));
    if (l.seccomp) l.seccomp = seccompSummary(l.seccomp as Obj);
  }
  return withoutEmpty(s) as Obj;
}

/** `x` without false, empty lists and empty objects at any depth: runc reads them as absent. */
function withoutEmpty(x: unknown): unknown {
  if (Array.isArray(x)) return x.map(withoutEmpty);
  if (typeof x !== 'object' || x === null) return x;
  const out: Obj = {};
  for (const [k, v] of Object.entries(x)) {
    const w = withoutEmpty(v);
    if (w === false || (Array.isArray(w) && w.length === 0)) continue;
    if (typeof w === 'object' && w !== null && !Array.isArray(w) && Object.keys(w).length === 0) continue;
    out[k] = w;
  }
  return out;
}

/** A seccomp filter as its default action and, per action, the sorted syscall names it lists. */
function seccompSummary(sc: Obj): Obj {
  const byAction: Record<string, string[]> = {};
  for (const r of (sc.syscalls as Obj[]) ?? []) {
    const key = `${r.action}${r.args ? ' (with args)' : ''}`;
    byAction[key] = [...(byAction[key] ?? []), ...((r.names as string[]) ?? [])];
  }
  for (const k of Object.keys(byAction)) byAction[k] = [...new Set(byAction[k])].sort();
  return { defaultAction: sc.defaultAction, byAction };
}

/** The differences of `a` (berth) and `b` (containerd), one line each, by JSON path. */
function differences(a: unknown, b: unknown, path = ''): string[] {
  if (JSON.stringify(a) === JSON.stringify(b)) return [];
  const isObj = (x: unknown): x is Obj => typeof x === 'object' && x !== null && !Array.isArray(x);
  if (isObj(a) && isObj(b)) {
    return [...new Set([...Object.keys(a), ...Object.keys(b)])]
      .sort()
      .flatMap((k) => differences(a[k], b[k], `${path}.${k}`));
  }
  if (
    Array.isArray(a) &&
    Array.isArray(b) &&
    a.every((x) => typeof x === 'string') &&
    b.every((x) => typeof x === 'string')
  ) {
    const only = (x: string[], y: string[]) => x.filter((v) => !y.includes(v));
    const [ab, ba] = [only(a as string[], b as string[]), only(b as string[], a as string[])];
    if (ab.length || ba.length)
      return [`${path}: only berth ${JSON.stringify(ab)}, only containerd ${JSON.stringify(ba)}`];
  }
  if (Array.isArray(a) && Array.isArray(b) && a.length === b.length) {
    return a.flatMap((x, i) => differences(x, b[i], `${path}[${i}]`));
  }
  const show = (x: unknown) => (x === undefined ? '(none)' : JSON.stringify(x));
  return [`${path}: berth ${show(a)}, containerd ${show(b)}`];
}

const wanted = process.env.CASES?.split(',');
const cases = CASES.filter((c) => !wanted || wanted.includes(c.name));
const dir = await mkdtemp(join(tmpdir(), 'berth-spec-parity-'));
const mirrors = Object.fromEntries(
  ['registry.k8s.io', 'gcr.io', 'public.ecr.aws', 'docker.io'].map((h) => [h, [`http://${REGISTRY}`]]),
);
const [subnet] = freeSubnets(1) as [string];
const ctdNet = await makeNetwork(join(dir, 'ctd-net'), 'parity-ctd', 'bparity-ctd0', subnet, 'per-pod');
const t = await startTraceStack('spec-parity', 'bparity-b0');
const ctdDir = join(dir, 'containerd');
const containerd = await startContainerd(ctdDir, {
  mirrors,
  cniConfDir: ctdNet.confDir,
  sandboxImage: SANDBOX_IMAGE,
});
try {
  const tasks = hostLayout(t.stack).tasks;
  const runtimes: Runtime[] = [
    {
      name: 'berth',
      crictl: t.crictl,
      configOf: (id) => JSON.parse(readFileSync(join(tasks, 'k8s.io', id, 'config.json'), 'utf8')) as Obj,
    },
    {
      name: 'containerd',
      crictl: crictlOn(containerd.sock),
      configOf: (id) =>
        JSON.parse(
          readFileSync(
            join(ctdDir, 'state', 'io.containerd.runtime.v2.task', 'k8s.io', id, 'config.json'),
            'utf8',
          ),
        ) as Obj,
    },
  ];
  for (const rt of runtimes) rt.crictl('pull', IMAGE);
  let n = 0;
  for (const c of cases) {
    n++;
    const got = runtimes.map((rt) => {
      try {
        return runCase(rt, c, dir, n);
      } catch (err) {
        return (err as Error).message;
      }
    });
    process.stdout.write(`== ${c.name}\n`);
    const [b, d] = got as [{ pod: Obj; ctr: Obj } | string, { pod: Obj; ctr: Obj } | string];
    if (typeof b === 'string' || typeof d === 'string') {
      process.stdout.write(
        `  berth: ${typeof b === 'string' ? b : 'ran'}\n  containerd: ${typeof d === 'string' ? d : 'ran'}\n`,
      );
      continue;
    }
    for (const part of ['pod', 'ctr'] as const) {
      const lines = differences(normalize(b[part]), normalize(d[part]));
      process.stdout.write(`  ${part === 'pod' ? 'pause' : 'container'}: ${lines.length ? '' : 'same'}\n`);
      for (const l of lines) process.stdout.write(`    ${l}\n`);
    }
  }
} finally {
  await containerd.stop();
  await t.stop();
  await removeNetwork(ctdNet);
  await rm(dir, { recursive: true, force: true });
}
