import type { ShimApi } from '@berth/api';
import type { Handlers } from '@berth/kit';
import type { ShimAgent } from '../domain/agent.js';
import type { TaskControl } from '../domain/control.js';

/** Handlers of exec processes: exec (prepare; `start` with the execId runs it) and its output. */
export function execHandlers(
  agent: ShimAgent,
  control: TaskControl,
): Pick<Handlers<typeof ShimApi>, 'exec' | 'exec-output'> {
  return {
    exec: (req) => agent.exec(req),
    'exec-output': (req) => control.execOutput(req),
  };
}
