/**
 * A whole berth stack for end-to-end tests: `berth up` (detached supervisor, all five services)
 * in an isolated temp installation, with the embedded nats-server and redis-server on free
 * loopback ports, or with external servers (e.g. from @berth/testing's startNats/startRedis).
 *
 * Usage:
 *   const stack = await startStack({ replicas: { 'image-service': 2 } });
 *   try {
 *     const r = await stack.berth('status', '--json');   // any CLI command, in this installation
 *     // talk to the services directly; the embedded NATS requires the credentials in the URL,
 *     // which the kit's connectNats passes on (nats.js's own connect ignores them)
 *     const nc = await connectNats({ url: stack.natsUrl, name: 'my-test' });
 *   } finally {
 *     await stack.stop();   // berth down, kill anything left over, remove the temp root
 *   }
 */
import { existsSync, readFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { type IsolatedEnv, isolatedEnv, type RunResult, runBerth } from './berth.js';
import { freeLowPort } from './ports.js';

/** One process of the stack, as the supervisor's state file lists it. */
export interface StackChild {
  name: string;
  kind: 'service' | 'embedded';
  replica: number;
  pid: number | null;
  status: string;
  restarts: number;
  logFile: string;
  marker: string;
  lastExit?: string;
}

/** The supervisor's state file (runRoot/supervisor.json). */
export interface StackState {
  pid: number;
  natsUrl: string;
  redisUrl: string;
  embedded: boolean;
  nodeId: string;
  socket: string;
  children: StackChild[];
}

/** `berth status --json` output. */
export interface StatusJson {
  supervisor: StackState | null;
  natsUrl: string;
  nodeId: string;
  ok: boolean;
  missing: string[];
  unhealthy: string[];
  services: {
    service: string;
    expected: number;
    found: number;
    instances: {
      service: string;
      node: string;
      instance: string;
      pid: number;
      version: string;
      health: string;
      /** Where the replica serves Prometheus metrics; null when metrics are off. */
      metrics: string | null;
    }[];
  }[];
}

export interface StackOptions {
  /** `--replicas` for `berth up`, e.g. { 'image-service': 2 }. */
  replicas?: Record<string, number>;
  /** External NATS; without it the stack runs its embedded nats-server on a free port. */
  natsUrl?: string;
  /** External Redis; without it the stack runs its embedded redis-server on a free port. */
  redisUrl?: string;
  /** Content of the stack's config file (BERTH_CONFIG). */
  config?: Record<string, unknown>;
  /** Extra environment for every CLI run (and so for the supervisor and services). */
  env?: NodeJS.ProcessEnv;
  /** Extra arguments for `berth up`. */
  upArgs?: string[];
  /** A command `berth up` runs under, and so the whole stack (e.g. `setpriv ...`): runBerth's wrapper. */
  upWrapper?: string[];
  /** Run `berth up` through the `berth` launcher users run (runBerth's `launcher`). */
  upLauncher?: boolean;
}

/** A running stack; see the module comment. */
export interface Stack extends IsolatedEnv {
  /** Output of the `berth up` that started it. */
  upResult: RunResult;
  /** Runs a CLI command in this installation. */
  berth(...args: string[]): Promise<RunResult>;
  /** `berth status --json`, parsed. */
  status(): Promise<{ code: number; json: StatusJson }>;
  /** The supervisor's state file now (undefined once it is down). */
  state(): StackState | undefined;
  readonly natsUrl: string;
  readonly redisUrl: string;
  /** Every pid the stack ever reported (supervisor, services, embedded servers). */
  knownPids(): Set<number>;
  /** Polls `berth status --json` until `pred` holds (bounded); returns the last status. */
  waitForStatus(pred: (s: StatusJson) => boolean, timeoutMs?: number): Promise<StatusJson>;
  /** `berth down`, then SIGKILL whatever this stack still runs, then remove the temp root. */
  stop(): Promise<void>;
}

/** Reads a stack's state file; undefined when absent. */
export function readStackState(runRoot: string): StackState | undefined {
  const f = join(runRoot, 'supervisor.json');
  if (!existsSync(f)) return undefined;
  return JSON.parse(readFileSync(f, 'utf8')) as StackState;
}

/**
 * True when a process runs with this pid. A zombie (exited, not yet reaped) counts as gone: here
 * orphans are reaped by PID 1, which may take a moment after they exit.
 */
export function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

/** True when `pid` still runs a program whose argv contains `marker` (guards against pid reuse). */
export function runs(pid: number, marker: string): boolean {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8')
      .split('\0')
      .some((a) => a.includes(marker));
  } catch {
    return false;
  }
}

/** Polls `check` every 50 ms until it returns a value other than undefined/false, or fails at the bound. */
export async function waitFor<T>(
  what: string,
  check: () => T | Promise<T>,
  timeoutMs = 30_000,
): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await check();
      if (v !== undefined && v !== null && v !== false) return v as NonNullable<T>;
    } catch (err) {
      last = err;
    }
    await sleep(50);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${String(last)}` : ''}`);
}

/**
 * Creates an isolated installation and runs `berth up` in it; see the module comment. Retries
 * with new ports if a free port was taken by someone else between picking and binding.
 * Fails with the CLI's output if `berth up` fails.
 */
export async function startStack(opts: StackOptions = {}): Promise<Stack> {
  for (let attempt = 0; attempt < 3; attempt++) {
    const iso = await isolatedEnv({
      ...(opts.config ? { config: opts.config } : {}),
      env: {
        ...(opts.natsUrl ? { BERTH_NATS_URL: opts.natsUrl } : {}),
        ...(opts.redisUrl ? { BERTH_REDIS_URL: opts.redisUrl } : {}),
        // Below the ephemeral range: every outgoing connection of the tests running beside this
        // one draws from that range, and could take a port between its pick and the bind.
        BERTH_EMBEDDED_NATS_PORT: String(await freeLowPort()),
        BERTH_EMBEDDED_REDIS_PORT: String(await freeLowPort()),
        ...opts.env,
      },
    });
    const replicas = Object.entries(opts.replicas ?? {}).flatMap(([s, n]) => ['--replicas', `${s}=${n}`]);
    const upResult = await runBerth(['up', ...replicas, ...(opts.upArgs ?? [])], {
      env: iso.env,
      ...(opts.upWrapper ? { wrapper: opts.upWrapper } : {}),
      ...(opts.upLauncher ? { launcher: true } : {}),
    });
    const stack = makeStack(iso, upResult);
    if (upResult.code === 0) return stack;
    await stack.stop();
    // Taken before `berth up` looked (its own check says so), or after it looked and before the
    // server bound it (the server's start-up fails on the bind).
    if (/port 127\.0\.0\.1:\d+ for the embedded .* is in use/.test(upResult.stderr)) continue;
    if (
      /embedded (nats|redis)-server exited during start-up[\s\S]*address already in use/i.test(
        upResult.stderr,
      )
    ) {
      continue;
    }
    throw new Error(`berth up failed (exit ${upResult.code}):\n${upResult.stdout}\n${upResult.stderr}`);
  }
  throw new Error('berth up: could not find free ports for the embedded servers after 3 attempts');
}

/** Wraps an isolated installation (with or without a running stack) in the Stack handle. */
export function makeStack(iso: IsolatedEnv, upResult: RunResult): Stack {
  const pids = new Set<number>();
  const markers = new Map<number, string>();
  const remember = (st: StackState | undefined) => {
    if (!st) return st;
    pids.add(st.pid);
    // supervisor-main.js, or its bundle supervisor-main.mjs.
    markers.set(st.pid, 'supervisor-main');
    for (const c of st.children) {
      if (c.pid !== null) {
        pids.add(c.pid);
        markers.set(c.pid, c.marker);
      }
    }
    return st;
  };
  const initial = remember(readStackState(iso.runRoot));
  const berth = (...args: string[]) => runBerth(args, { env: iso.env });
  const stack: Stack = {
    ...iso,
    upResult,
    berth,
    async status() {
      const r = await berth('status', '--json');
      try {
        const json = JSON.parse(r.stdout) as StatusJson;
        remember(json.supervisor ?? undefined);
        return { code: r.code, json };
      } catch {
        throw new Error(`berth status --json did not print JSON (exit ${r.code}):\n${r.stdout}\n${r.stderr}`);
      }
    },
    state: () => remember(readStackState(iso.runRoot)),
    natsUrl: initial?.natsUrl ?? iso.env.BERTH_NATS_URL ?? '',
    redisUrl: initial?.redisUrl ?? iso.env.BERTH_REDIS_URL ?? '',
    knownPids: () => new Set(pids),
    async waitForStatus(pred, timeoutMs = 30_000) {
      let last: StatusJson | undefined;
      await waitFor(
        'berth status to match',
        async () => {
          last = (await stack.status()).json;
          return pred(last);
        },
        timeoutMs,
      ).catch((err: Error) => {
        throw new Error(`${err.message}\nlast status: ${JSON.stringify(last, null, 2)}`);
      });
      return last as StatusJson;
    },
    async stop() {
      remember(readStackState(iso.runRoot));
      await berth('down').catch(() => undefined);
      // Whatever `down` missed (a test that broke the stack on purpose): kill by pid, checked.
      for (const pid of pids) {
        const marker = markers.get(pid);
        if (marker && alive(pid) && runs(pid, marker)) process.kill(pid, 'SIGKILL');
      }
      await iso.cni.close();
      await rm(iso.root, { recursive: true, force: true });
    },
  };
  return stack;
}
