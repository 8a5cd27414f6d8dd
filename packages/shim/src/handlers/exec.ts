import { ShimExecRequest, ShimTaskRef } from '@berth/api';
import { endpoint } from '@berth/kit';
import type { ShimAgent } from '../domain/agent.js';
import type { TaskControl } from '../domain/control.js';

/** Endpoints of exec processes: exec (prepare; `start` with the execId runs it) and its output. */
export function execEndpoints(agent: ShimAgent, control: TaskControl) {
  return {
    exec: endpoint(ShimExecRequest, (req) => agent.exec(req), 'prepare a process in a running task'),
    'exec-output': endpoint(ShimTaskRef, (req) => control.execOutput(req), 'what an exec wrote (capped)'),
  };
}
