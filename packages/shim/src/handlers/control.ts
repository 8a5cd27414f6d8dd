import type { ShimApi } from '@berth/api';
import type { Handlers } from '@berth/kit';
import type { TaskControl } from '../domain/control.js';

/** Handlers that act on a live task: pause, resume, pids, stats, update, stdin, terminal, log. */
export function controlHandlers(
  control: TaskControl,
): Pick<
  Handlers<typeof ShimApi>,
  'pause' | 'resume' | 'pids' | 'stats' | 'update' | 'close-stdin' | 'resize' | 'reopen-log'
> {
  const done = async (p: Promise<unknown>) => {
    await p;
    return {};
  };
  return {
    pause: (req) => done(control.setPaused(req, true)),
    resume: (req) => done(control.setPaused(req, false)),
    pids: (req) => control.pids(req),
    stats: (req) => control.stats(req),
    update: (req) => done(control.update(req)),
    'close-stdin': (req) => done(control.closeStdin(req)),
    resize: (req) => done(control.resize(req)),
    'reopen-log': (req) => done(control.reopenLog(req)),
  };
}
