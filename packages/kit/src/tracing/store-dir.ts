import { hostLayout } from '../layout.js';

/**
 * The span store directory of a host (state root /traces), or undefined when BERTH_TRACE_STORE=off
 * turns the embedded store off (a collector is enough, or the state root is read-only).
 */
export function traceStoreDir(
  roots: { stateRoot: string; runRoot: string },
  env: NodeJS.ProcessEnv = process.env,
): string | undefined {
  if (env.BERTH_TRACE_STORE === 'off' || env.BERTH_TRACE_STORE === '0') return undefined;
  return hostLayout(roots).traces;
}
