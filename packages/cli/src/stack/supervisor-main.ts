/**
 * Entry point of the detached supervisor that `berth up` forks. It reads its plan from the
 * environment, starts the stack, tells the parent over the IPC channel whether that worked, then
 * drops the channel and runs until `berth down` (control socket) or SIGTERM/SIGINT.
 * Its stdout/stderr are <stateRoot>/services/supervisor.log.
 */
import { toBerthError } from '@berth/api/errors';
import type { StackPlan } from './stack-plan.js';
import { SUPERVISOR_ENV, Supervisor } from './supervisor.js';

/** Messages the supervisor sends its parent over IPC, once. */
export type SupervisorHello = { type: 'ready' } | { type: 'failed'; code: string; message: string };

const log = (msg: string, fields: Record<string, unknown> = {}) => {
  process.stdout.write(
    `${JSON.stringify({ level: 30, time: new Date().toISOString(), service: 'supervisor', pid: process.pid, msg, ...fields })}\n`,
  );
};

function tell(hello: SupervisorHello): Promise<void> {
  return new Promise((resolve) => {
    if (!process.send || !process.connected) return resolve();
    process.send(hello, undefined, {}, () => resolve());
  });
}

const raw = process.env[SUPERVISOR_ENV.plan];
if (!raw) {
  process.stderr.write('supervisor: no plan in the environment; start it with `berth up`\n');
  process.exit(2);
}
const plan = JSON.parse(raw) as StackPlan;
const sup = new Supervisor(plan, log);

// The supervisor runs CLI commands for the `berth` client (served.ts): a promise one of them left
// unhandled is logged, not the end of the process that watches the whole stack.
process.on('unhandledRejection', (err) => log('unhandled rejection', { err: String(err) }));
// A detached supervisor has no terminal; a stray SIGHUP must not take the stack down.
process.on('SIGHUP', () => log('ignoring SIGHUP'));
for (const sig of ['SIGTERM', 'SIGINT'] as const) {
  process.on(sig, () => {
    log(`${sig}: stopping the stack`);
    void sup.down(() => undefined);
  });
}

try {
  await sup.start();
  log('stack started', { services: plan.services.length, embedded: plan.embedded.map((e) => e.kind) });
  await tell({ type: 'ready' });
} catch (err) {
  const e = toBerthError(err);
  log('start-up failed', { code: e.code, err: e.message });
  await tell({ type: 'failed', code: e.code, message: e.message });
  process.exit(1);
}
if (process.connected) process.disconnect();
await sup.done;
await sup.drained(5000);
log('stack stopped');
process.exit(0);
