import { ShimResizeRequest, ShimTaskRef, ShimUpdateRequest } from '@berth/api';
import { endpoint } from '@berth/kit';
import type { TaskControl } from '../domain/control.js';

/** Endpoints that act on a live task: pause, resume, pids, stats, update, stdin, terminal, log. */
export function controlEndpoints(control: TaskControl) {
  return {
    pause: endpoint(ShimTaskRef, async (req) => {
      await control.setPaused(req, true);
      return {};
    }),
    resume: endpoint(ShimTaskRef, async (req) => {
      await control.setPaused(req, false);
      return {};
    }),
    pids: endpoint(ShimTaskRef, (req) => control.pids(req), 'host pids of the task'),
    stats: endpoint(ShimTaskRef, (req) => control.stats(req), 'cgroup sample: cpu, memory, pids'),
    update: endpoint(ShimUpdateRequest, async (req) => {
      await control.update(req);
      return {};
    }),
    'close-stdin': endpoint(ShimTaskRef, async (req) => {
      await control.closeStdin(req);
      return {};
    }),
    resize: endpoint(ShimResizeRequest, async (req) => {
      await control.resize(req);
      return {};
    }),
    'reopen-log': endpoint(ShimTaskRef, async (req) => {
      await control.reopenLog(req);
      return {};
    }),
  };
}
