// The stack commands themselves (up, down, status, service logs); the table in commands/stack.ts
// loads this module only when one of them runs.
import { spawn } from 'node:child_process';
import { closeSync, mkdirSync, openSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { BerthError, Code, type Service } from '@berth/api';
import type { Config } from '@berth/kit/config';
import { hostLayout } from '@berth/kit/layout';
import { redactUrl } from '@berth/kit/redact';
import { type CliContext, cliNatsTls, readSupervisorState, type SupervisorState } from '../context.js';
import { cleanupOrphans, isSupervisorProcess } from './cleanup.js';
import { type ControlReply, controlRequest } from './control.js';
import { collectStatus, renderStatus, type StackStatus } from './discovery.js';
import { logTail, natsMonitorUrl } from './embedded.js';
import { follow, LOGGED, serviceLogPath, tailLines } from './logs.js';
import {
  makePlan,
  parseReplicas,
  SERVICE_V8_FLAGS,
  STACK_SERVICES,
  type StackPlan,
  supervisorMain,
} from './plan.js';
import { checkPrerequisites } from './prereqs.js';
import { exited, terminatePid } from './proc.js';
import { expectedFromState, waitStackReady } from './ready.js';
import { stopNodeContainers } from './stop-containers.js';
import { MALLOC_ENV, SUPERVISOR_ENV, Supervisor } from './supervisor.js';
import type { SupervisorHello } from './supervisor-main.js';

const DEFAULT_UP_TIMEOUT_S = 60;

/** Asks a running supervisor for its state; undefined when none answers on the socket. */
async function liveState(config: Config): Promise<SupervisorState | undefined> {
  const socket = hostLayout(config).run.supervisorSocket;
  try {
    const replies = await controlRequest(socket, { op: 'status' }, { timeoutMs: 5000 });
    const st = replies.find((r) => r.type === 'status');
    return st?.type === 'status' ? st.state : undefined;
  } catch {
    return undefined;
  }
}

/**
 * A state file whose supervisor is gone: stop what it left running (after checking each pid still
 * runs that program) and remove the file, so the next `up` starts clean. With `adopt` (`berth up`)
 * a supervisor that is gone leaves its processes to the new one, which adopts them (the stack
 * carries on; supervisor.ts); only one that is still there but does not answer is stopped first.
 */
async function cleanStale(ctx: CliContext, adopt = false): Promise<'none' | 'live' | 'cleaned' | 'adopt'> {
  const stale = readSupervisorState(ctx.config);
  if (!stale) return 'none';
  const layout = hostLayout(ctx.config);
  if (adopt && (exited(stale.pid) || !isSupervisorProcess(stale.pid))) return 'adopt';
  if (!exited(stale.pid) && isSupervisorProcess(stale.pid)) {
    // Alive: it may have bound its socket just after we asked (a concurrent `berth up`), so ask
    // again for a while before deciding it is stuck.
    const deadline = Date.now() + 5000;
    while (Date.now() < deadline && !exited(stale.pid)) {
      if (await liveState(ctx.config)) return 'live';
      await sleep(100);
    }
    if (!exited(stale.pid)) {
      ctx.err.write(`berth: supervisor pid ${stale.pid} does not answer on its socket; sending SIGTERM\n`);
      await terminatePid(stale.pid, downTimeoutMs(ctx.config));
    }
  }
  const lines = await cleanupOrphans(stale, layout, ctx.config.shutdownGraceMs + 5000);
  ctx.err.write(`berth: cleaned up after supervisor pid ${stale.pid}, which is gone\n`);
  for (const l of lines) ctx.err.write(`berth: ${l}\n`);
  return 'cleaned';
}

function downTimeoutMs(config: Config): number {
  // Four service groups and two embedded servers, each allowed its full grace, plus slack.
  return (config.shutdownGraceMs + 5000) * 6 + 10_000;
}

function parseTimeout(v: unknown): number {
  if (v === undefined) return DEFAULT_UP_TIMEOUT_S * 1000;
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) {
    throw new BerthError(Code.INVALID_ARGUMENT, `--timeout "${String(v)}": expected a number of seconds`);
  }
  return n * 1000;
}

function summary(plan: StackPlan, state: SupervisorState): string {
  const kinds = plan.embedded.map((e) => e.kind);
  const nats = `NATS ${redactUrl(plan.natsUrl)}${kinds.includes('nats-server') ? ' (embedded)' : ''}`;
  const redis = `Redis ${redactUrl(plan.redisUrl)}${kinds.includes('redis-server') ? ' (embedded)' : ''}`;
  return (
    `berth is up on node ${plan.nodeId}: supervisor pid ${state.pid}, ${nats}, ${redis}\n` +
    `logs: ${hostLayout(plan).serviceLogs}\n`
  );
}

function restartsByPid(state: SupervisorState | undefined): Map<number, number> {
  return new Map(
    (state?.children ?? []).filter((c) => c.pid !== null).map((c) => [c.pid as number, c.restarts] as const),
  );
}

/** Forks the supervisor in its own session and waits for its hello over IPC. */
async function forkSupervisor(plan: StackPlan): Promise<number> {
  const main = supervisorMain();
  const logs = hostLayout(plan).serviceLogs;
  mkdirSync(logs, { recursive: true, mode: 0o750 });
  const logFile = join(logs, 'supervisor.log');
  const fd = openSync(logFile, 'a', 0o640);
  // The supervisor runs with the services' default V8 flags.
  const child = spawn(process.execPath, [...SERVICE_V8_FLAGS, main], {
    detached: true,
    stdio: ['ignore', fd, fd, 'ipc'],
    env: { ...MALLOC_ENV, ...process.env, [SUPERVISOR_ENV.plan]: JSON.stringify(plan) },
  });
  closeSync(fd);
  const hello = await new Promise<SupervisorHello>((resolve) => {
    child.once('message', (m) => resolve(m as SupervisorHello));
    child.once('exit', (code, signal) =>
      resolve({
        type: 'failed',
        code: Code.INTERNAL,
        message: `the supervisor exited (${code ?? signal}) before the stack was up: ${logTail(logFile)}`,
      }),
    );
  });
  if (child.connected) child.disconnect();
  child.unref();
  if (hello.type === 'failed') {
    throw new BerthError(hello.code in Code ? (hello.code as Code) : Code.INTERNAL, hello.message);
  }
  return child.pid as number;
}

export async function up(args: { values: Record<string, unknown> }, ctx: CliContext): Promise<number> {
  const { config } = ctx;
  const replicaArgs = (args.values.replicas as string[] | undefined) ?? [];
  // --cohosted wins over the config's `cohosted` key (and BERTH_COHOSTED).
  const plan = makePlan(
    config,
    parseReplicas(replicaArgs),
    process.env,
    args.values.cohosted === true ? { cohosted: true } : {},
  );
  const timeoutMs = parseTimeout(args.values.timeout);
  const running = await liveState(config);
  if (running) {
    ctx.out.write(
      `berth is already up (supervisor pid ${running.pid}, NATS ${redactUrl(running.natsUrl)}); ` +
        `'berth status' shows it, 'berth down' stops it\n`,
    );
    return 0;
  }
  const stale = await cleanStale(ctx, true);
  if (stale === 'live') {
    ctx.out.write("berth is already up; 'berth status' shows it\n");
    return 0;
  }
  if (stale === 'adopt') {
    ctx.err.write('berth: the previous supervisor died; the new one takes over what it left running\n');
  }
  const problems = checkPrerequisites(plan);
  if (problems.length > 0) {
    for (const p of problems) ctx.err.write(`berth up: ${p}\n`);
    return 1;
  }

  if (args.values.foreground) return upForeground(plan, ctx, timeoutMs);

  let pid: number;
  try {
    pid = await forkSupervisor(plan);
  } catch (err) {
    // Another `berth up` won the race for the socket: the stack is up, which is what was asked.
    if ((err as BerthError).code !== Code.ALREADY_EXISTS) throw err;
    const other = await liveState(config);
    ctx.out.write(`berth is already up (supervisor pid ${other?.pid ?? '?'}); 'berth status' shows it\n`);
    return 0;
  }
  const { status, state } = await waitStackReady({
    natsUrl: plan.logins?.cli?.natsUrl ?? plan.natsUrl,
    ...(config.natsUrl && config.natsCreds ? { creds: config.natsCreds } : {}),
    ...cliNatsTls(config),
    getState: () => liveState(config),
    timeoutMs,
  }).catch((err: unknown) => {
    const e = err as BerthError;
    throw new BerthError(
      e.code ?? Code.INTERNAL,
      `${e.message}\nthe supervisor (pid ${pid}) keeps trying; 'berth status' shows progress, 'berth down' stops it`,
    );
  });
  ctx.out.write(summary(plan, state));
  ctx.out.write(renderStatus(status, restartsByPid(state)));
  return 0;
}

async function upForeground(plan: StackPlan, ctx: CliContext, timeoutMs: number): Promise<number> {
  const log = (msg: string) => ctx.err.write(`berth: ${msg}\n`);
  const sup = new Supervisor(plan, log);
  const onSignal = (sig: NodeJS.Signals) => {
    log(`${sig}: stopping the stack`);
    void sup.down(() => undefined);
  };
  // SIGHUP too: a closed terminal must stop the stack cleanly rather than orphan it.
  const signals = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
  for (const sig of signals) process.on(sig, onSignal);
  try {
    await sup.start();
    const creds = ctx.config.natsUrl ? ctx.config.natsCreds : undefined;
    const waiting = waitStackReady({
      natsUrl: plan.logins?.cli?.natsUrl ?? plan.natsUrl,
      ...(creds ? { creds } : {}),
      ...cliNatsTls(ctx.config),
      getState: async () => sup.state(),
      timeoutMs,
    });
    // Ctrl-C during start-up wins the race; the abandoned wait must not fail the process later.
    waiting.catch(() => undefined);
    const ready = await Promise.race([waiting, sup.done.then(() => undefined)]);
    if (ready) {
      ctx.out.write(summary(plan, ready.state));
      ctx.out.write(renderStatus(ready.status, restartsByPid(ready.state)));
      log("running in the foreground; Ctrl-C or 'berth down' stops the stack");
    }
    await sup.done;
    await sup.drained(5000);
    log('stack stopped');
    return 0;
  } catch (err) {
    await sup.down(() => undefined);
    throw err;
  } finally {
    for (const sig of signals) process.off(sig, onSignal);
  }
}

export async function down(args: { values: Record<string, unknown> }, ctx: CliContext): Promise<number> {
  const { config } = ctx;
  const layout = hostLayout(config);
  const state = readSupervisorState(config);
  let stopFailed = 0;
  if (args.values.containers === true) {
    const t = Number(args.values.time ?? 10);
    if (!Number.isFinite(t) || t < 0) {
      throw new BerthError(Code.INVALID_ARGUMENT, `invalid --time value "${String(args.values.time)}"`);
    }
    // Only a running stack can stop containers and record their exits; without one, say so and go on.
    if (await liveState(config)) stopFailed = await stopNodeContainers(ctx, t);
    else ctx.err.write('berth down: the stack is not up, so no container was stopped\n');
  }
  let replies: ControlReply[] | undefined;
  try {
    replies = await controlRequest(
      layout.run.supervisorSocket,
      { op: 'down' },
      {
        timeoutMs: downTimeoutMs(config),
        onLine: (r) => {
          if (r.type === 'progress') {
            const pid = r.pid === null ? '' : ` (pid ${r.pid})`;
            ctx.out.write(`${r.name}#${r.replica}${pid}: ${r.result}\n`);
          }
        },
      },
    );
  } catch (err) {
    if ((err as BerthError).code !== Code.UNAVAILABLE) throw err;
  }
  if (replies) {
    const failed = replies.find((r) => r.type === 'error');
    if (failed?.type === 'error') throw new BerthError(Code.INTERNAL, `berth down: ${failed.message}`);
    if (!replies.some((r) => r.type === 'done')) {
      throw new BerthError(
        Code.INTERNAL,
        'berth down: the supervisor closed the connection before it was done',
      );
    }
    // The supervisor exits right after answering; wait (bounded) so `down` returning means gone.
    const pid = state?.pid;
    const deadline = Date.now() + 10_000;
    while (pid !== undefined && !exited(pid) && Date.now() < deadline) await sleep(20);
    ctx.out.write('berth is down\n');
    return stopFailed > 0 ? 1 : 0;
  }
  const stale = await cleanStale(ctx);
  if (stale === 'live') {
    // It answered on the second try: ask it properly (containers were handled above).
    return down({ values: { ...args.values, containers: false } }, ctx);
  }
  if (stale === 'cleaned') {
    ctx.out.write('berth is down\n');
    return 0;
  }
  ctx.out.write('berth is not up\n');
  return 0;
}

export async function status(args: { values: Record<string, unknown> }, ctx: CliContext): Promise<number> {
  const { config } = ctx;
  const live = await liveState(config);
  // A state file nobody answers for: the supervisor died. Its plan still says what should run.
  const stale = live ? undefined : readSupervisorState(config);
  const natsUrl = config.natsUrl ?? live?.natsUrl ?? ctx.natsUrl;
  const known = live ?? stale;
  const expected: Partial<Record<Service, number>> = known
    ? expectedFromState(known)
    : Object.fromEntries(STACK_SERVICES.map((s) => [s, 1]));
  let st: StackStatus;
  try {
    const nc = await ctx.nats();
    st = await collectStatus(nc, { nodeId: config.nodeId, expected });
    if (stale) {
      st.missing.unshift(
        `the supervisor (pid ${stale.pid}) is not running, so nothing restarts crashed services: ` +
          "run 'berth up' (a new supervisor takes over what still runs)",
      );
      st.ok = false;
    }
  } catch (err) {
    const hint = live
      ? 'the supervisor runs but NATS does not answer'
      : "is berth up? start it with 'berth up'";
    throw new BerthError(Code.UNAVAILABLE, `cannot reach NATS at ${redactUrl(natsUrl)}: ${hint}`, {
      cause: err,
    });
  }
  if (args.values.json) {
    // The URLs may carry the embedded servers' credentials; output shows where, never the secret.
    const supervisor = live
      ? { ...live, natsUrl: redactUrl(live.natsUrl), redisUrl: redactUrl(live.redisUrl) }
      : null;
    ctx.out.write(`${JSON.stringify({ supervisor, natsUrl: redactUrl(natsUrl), ...st }, null, 2)}\n`);
    return st.ok ? 0 : 1;
  }
  if (live) {
    ctx.out.write(
      `supervisor pid ${live.pid} on node ${live.nodeId}, up since ${live.startedAt}; ` +
        `NATS ${redactUrl(live.natsUrl)}, Redis ${redactUrl(live.redisUrl)}${live.embedded ? ' (embedded servers below)' : ''}\n`,
    );
    for (const c of live.children.filter((c) => c.kind === 'embedded')) {
      const monitor =
        c.name === 'nats-server' && c.pid
          ? natsMonitorUrl(hostLayout(config).embedded.nats, c.pid)
          : undefined;
      ctx.out.write(
        `  ${c.name}: ${c.status}${c.pid ? ` pid ${c.pid}` : ''}, restarts ${c.restarts}` +
          `${monitor ? `, monitoring ${monitor}` : ''}\n`,
      );
    }
    for (const c of live.children.filter((c) => c.kind === 'service' && c.status !== 'running')) {
      ctx.out.write(`  ${c.name}#${c.replica}: ${c.status} after ${c.lastExit ?? '?'}; log ${c.logFile}\n`);
    }
  } else if (!stale) {
    ctx.out.write(
      `no supervisor on this host (services may run under systemd); NATS ${redactUrl(natsUrl)}\n`,
    );
  }
  ctx.out.write(renderStatus(st, restartsByPid(live)));
  for (const u of st.unhealthy) ctx.out.write(`unhealthy: ${u}\n`);
  return st.ok ? 0 : 1;
}

export async function serviceLogs(
  args: { values: Record<string, unknown>; positionals: string[] },
  ctx: CliContext,
) {
  const [name, extra] = args.positionals;
  if (!name || extra) {
    throw new BerthError(
      Code.INVALID_ARGUMENT,
      `berth service logs: expected one SERVICE (one of ${LOGGED.join(', ')})`,
    );
  }
  const num = (flag: string, min: number): number | undefined => {
    const v = args.values[flag];
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) {
      throw new BerthError(
        Code.INVALID_ARGUMENT,
        `--${flag} "${String(v)}": expected a whole number >= ${min}`,
      );
    }
    return n;
  };
  const file = serviceLogPath(hostLayout(ctx.config).serviceLogs, name, num('replica', 1));
  const { text, end } = tailLines(file, num('tail', 0));
  ctx.out.write(text);
  if (args.values.follow) await follow(file, end, (s) => ctx.out.write(s));
  return 0;
}
