import { BerthError, Code, type TaskStatus } from '@berth/api';

/**
 * The states of a process the shim runs: the wire's TaskStatus plus `deleted`, which is never stored
 * (a deleted process has no record) but is where `delete` leads and the only state a container's
 * files may be removed in.
 */
export const ProcessState = {
  created: 'created',
  running: 'running',
  paused: 'paused',
  stopped: 'stopped',
  unknown: 'unknown',
  deleted: 'deleted',
} as const satisfies Record<TaskStatus | 'deleted', string>;
export type ProcessState = (typeof ProcessState)[keyof typeof ProcessState];

/**
 * What can happen to a process: each shim operation that acts on one (named as on the wire), plus
 * `exit` (its exit is recorded) and `lose-monitor` (its conmon vanished while runc still runs it).
 * Operations that keep the state (kill of a running task, stats...) are listed too, so whether an
 * operation is allowed in a state is answered here and nowhere else.
 */
export const ProcessEvent = {
  start: 'start',
  pause: 'pause',
  resume: 'resume',
  kill: 'kill',
  exec: 'exec',
  pids: 'pids',
  stats: 'stats',
  update: 'update',
  resize: 'resize',
  reopenLog: 'reopen-log',
  closeStdin: 'close-stdin',
  exit: 'exit',
  loseMonitor: 'lose-monitor',
  delete: 'delete',
  removeFiles: 'remove-files',
} as const;
export type ProcessEvent = (typeof ProcessEvent)[keyof typeof ProcessEvent];

/** A task's init process, or an exec process within a task. */
export type ProcessKind = 'task' | 'exec';

type Table = Record<ProcessState, Partial<Record<ProcessEvent, ProcessState>>>;

const S = ProcessState;
/** Operations on a live task that leave its state as it is. */
const live = <T extends ProcessState>(s: T) =>
  ({ pids: s, stats: s, update: s, resize: s, 'reopen-log': s, 'close-stdin': s }) as const;

/**
 * Every allowed transition, per kind: TRANSITIONS[kind][from][event] is the state after the event.
 * A pair missing here is refused with FAILED_PRECONDITION.
 */
export const TRANSITIONS: Readonly<Record<ProcessKind, Table>> = {
  task: {
    created: {
      start: S.running,
      kill: S.created,
      'close-stdin': S.created,
      // conmon holds the terminal from create on: its size is set before the process starts.
      resize: S.created,
      exit: S.stopped,
      'lose-monitor': S.unknown,
      // runc kills the init first; its exit is recorded on the way (created -> stopped -> deleted).
      delete: S.deleted,
    },
    running: {
      ...live(S.running),
      pause: S.paused,
      kill: S.running,
      exec: S.running,
      exit: S.stopped,
      'lose-monitor': S.unknown,
    },
    paused: {
      ...live(S.paused),
      resume: S.running,
      // A frozen cgroup holds a signal pending: kill thaws the task so the signal acts.
      kill: S.running,
      exit: S.stopped,
      'lose-monitor': S.unknown,
    },
    // The monitor is gone while runc still runs the init: nothing can see its exit any more.
    unknown: { kill: S.unknown, 'close-stdin': S.unknown, exit: S.stopped, delete: S.deleted },
    // kill and close-stdin of an exited process are no errors (rm -f kills first).
    stopped: { kill: S.stopped, 'close-stdin': S.stopped, delete: S.deleted },
    deleted: { 'remove-files': S.deleted },
  },
  exec: {
    created: {
      start: S.running,
      'close-stdin': S.created,
      resize: S.created,
      exit: S.stopped,
      delete: S.deleted,
    },
    running: {
      kill: S.running,
      resize: S.running,
      'reopen-log': S.running,
      'close-stdin': S.running,
      exit: S.stopped,
    },
    // An exec is neither paused (its task is) nor unknown (its exit is always recorded).
    paused: {},
    unknown: {},
    stopped: { kill: S.stopped, 'close-stdin': S.stopped, delete: S.deleted },
    deleted: {},
  },
};

/** Why an event is refused, whatever the state; said after the refusal. */
const HINTS: Record<ProcessEvent, string> = {
  start: 'only a created process can be started',
  pause: 'only a running task can be paused',
  resume: 'only a paused task can be resumed',
  kill: 'start it first',
  exec: 'exec needs the task running',
  pids: 'it is not running',
  stats: 'it is not running',
  update: 'it is not running',
  resize: 'it is not running',
  'reopen-log': 'it is not running',
  'close-stdin': 'it has no stdin any more',
  exit: 'its exit is already recorded',
  'lose-monitor': 'its monitor is already lost',
  delete: 'kill it and wait for its exit first',
  'remove-files': 'delete the task first',
};

/** The process a transition is about, as its error messages name it. */
export interface ProcessName {
  id: string;
  execId?: string;
}

/** `task "<id>"` or `exec "<execId>" of task "<id>"`. */
export function describeProcess(p: ProcessName): string {
  return p.execId ? `exec "${p.execId}" of task "${p.id}"` : `task "${p.id}"`;
}

/** Whether `event` is allowed for a process of `kind` in state `from`. */
export function allows(kind: ProcessKind, from: ProcessState, event: ProcessEvent): boolean {
  return TRANSITIONS[kind][from]?.[event] !== undefined;
}

/**
 * The state a process moves to when `event` happens in state `from`; FAILED_PRECONDITION naming the
 * process, its state and the operation when the table does not allow it.
 */
export function transition(p: ProcessName, from: ProcessState, event: ProcessEvent): ProcessState {
  const kind: ProcessKind = p.execId ? 'exec' : 'task';
  const to = TRANSITIONS[kind][from]?.[event];
  if (to === undefined) {
    throw new BerthError(
      Code.FAILED_PRECONDITION,
      `${describeProcess(p)} is ${from}: cannot ${event} (${HINTS[event]})`,
    );
  }
  return to;
}
