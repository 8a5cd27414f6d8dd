import { setTimeout as sleep } from 'node:timers/promises';
import { BerthError, Code, type Service } from '@berth/api';
import { connectNats } from '@berth/kit/nats';
import { redactUrl } from '@berth/kit/redact';
import type { TlsFiles } from '@berth/kit/tls';
import type { SupervisorState } from '../context.js';
import { collectStatus, type InstanceStatus, type StackStatus } from './discovery.js';
import { logTail } from './embedded.js';

/** Replicas per service the supervisor runs, from its state. */
export function expectedFromState(state: SupervisorState): Partial<Record<Service, number>> {
  const out: Partial<Record<Service, number>> = {};
  for (const c of state.children) {
    if (c.kind !== 'service') continue;
    for (const name of c.services ?? [c.name]) out[name as Service] = (out[name as Service] ?? 0) + 1;
  }
  return out;
}

/**
 * Waits until every service process the supervisor runs is registered on NATS (matched by pid)
 * and its service answers `info` healthy. `getState` is asked again each round because a
 * replica that crashes during start-up comes back with a new pid. Fails with the services that
 * never came up and the tail of their logs.
 */
export async function waitStackReady(opts: {
  natsUrl: string;
  /** NATS credentials file, for a configured NATS that wants one. */
  creds?: string;
  /** TLS files, for a configured NATS that serves TLS (config natsTls). */
  tls?: TlsFiles;
  getState: () => Promise<SupervisorState | undefined>;
  timeoutMs: number;
}): Promise<{ status: StackStatus; state: SupervisorState }> {
  const deadline = Date.now() + opts.timeoutMs;
  const connecting = connectNats({
    url: opts.natsUrl,
    name: 'berth-up',
    ...(opts.creds ? { creds: opts.creds } : {}),
    ...(opts.tls ? { tls: opts.tls } : {}),
    extra: { maxReconnectAttempts: -1, waitOnFirstConnect: true },
  });
  // nats.js keeps trying forever with waitOnFirstConnect; the wait must stay bounded.
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), opts.timeoutMs);
  });
  const nc = await Promise.race([connecting, late]).finally(() => clearTimeout(timer));
  if (!nc) {
    void connecting.then((c) => c.close()).catch(() => undefined);
    throw new BerthError(
      Code.UNAVAILABLE,
      `cannot reach NATS at ${redactUrl(opts.natsUrl)} within ${opts.timeoutMs} ms (is it running? is natsUrl right?)`,
    );
  }
  try {
    let lastProblem = 'no answer yet';
    let lastState: SupervisorState | undefined;
    while (Date.now() < deadline) {
      const state = await opts.getState();
      if (!state)
        throw new BerthError(Code.UNAVAILABLE, 'the supervisor stopped while the stack was starting');
      lastState = state;
      const status = await collectStatus(nc, {
        nodeId: state.nodeId,
        expected: expectedFromState(state),
        untilExpected: true,
      });
      // Keyed by service too: a co-hosted process answers for every service with one pid.
      const found = new Map<string, InstanceStatus>(
        status.services.flatMap((s) => s.instances.map((i) => [`${i.service}/${i.pid}`, i] as const)),
      );
      const waiting = state.children.filter((c) => {
        if (c.kind !== 'service') return false;
        return (c.services ?? [c.name]).some(
          (name) => c.pid === null || found.get(`${name}/${c.pid}`)?.health !== 'healthy',
        );
      });
      if (waiting.length === 0) return { status, state };
      lastProblem = waiting
        .map(
          (c) =>
            `${c.name}#${c.replica} (${c.pid === null ? `restarting after ${c.lastExit}` : `pid ${c.pid}`})`,
        )
        .join(', ');
      await sleep(200);
    }
    const tails = (lastState?.children ?? [])
      .filter((c) => c.kind === 'service' && lastProblem.includes(`${c.name}#${c.replica}`))
      .map((c) => `  ${c.logFile}: ${logTail(c.logFile, 2)}`);
    throw new BerthError(
      Code.DEADLINE_EXCEEDED,
      `not every service answered within ${opts.timeoutMs} ms; waiting for ${lastProblem}\n${tails.join('\n')}`,
    );
  } finally {
    await nc.close().catch(() => undefined);
  }
}
