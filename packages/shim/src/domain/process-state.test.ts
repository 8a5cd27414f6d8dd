import { BerthError, Code } from '@berth/api';
import { describe, expect, it } from 'vitest';
import {
  allows,
  describeProcess,
  ProcessEvent,
  type ProcessKind,
  ProcessState,
  TRANSITIONS,
  transition,
} from './process-state.js';

// Written out by hand, not read from TRANSITIONS: the table must say exactly this.
const ALLOWED = `
task created start running
task created kill created
task created close-stdin created
task created resize created
task created exit stopped
task created lose-monitor unknown
task created delete deleted
task running pids running
task running stats running
task running update running
task running resize running
task running reopen-log running
task running close-stdin running
task running pause paused
task running kill running
task running exec running
task running exit stopped
task running lose-monitor unknown
task paused pids paused
task paused stats paused
task paused update paused
task paused resize paused
task paused reopen-log paused
task paused close-stdin paused
task paused resume running
task paused kill running
task paused exit stopped
task paused lose-monitor unknown
task unknown kill unknown
task unknown close-stdin unknown
task unknown exit stopped
task unknown delete deleted
task stopped kill stopped
task stopped close-stdin stopped
task stopped delete deleted
task deleted remove-files deleted
exec created start running
exec created close-stdin created
exec created resize created
exec created exit stopped
exec created delete deleted
exec running kill running
exec running resize running
exec running reopen-log running
exec running close-stdin running
exec running exit stopped
exec stopped kill stopped
exec stopped close-stdin stopped
exec stopped delete deleted
`
  .trim()
  .split('\n')
  .map((line) => line.split(' ') as [ProcessKind, ProcessState, ProcessEvent, ProcessState]);

const task = { id: 'web' };
const exec = { id: 'web', execId: 'sh' };
const nameOf = (kind: ProcessKind) => (kind === 'task' ? task : exec);

/** The error a refused transition throws (or a failure when it is allowed). */
function refusal(p: { id: string; execId?: string }, from: ProcessState, event: ProcessEvent): BerthError {
  try {
    transition(p, from, event);
  } catch (err) {
    if (err instanceof BerthError) return err;
    throw err;
  }
  throw new Error(`${describeProcess(p)}: ${event} in ${from} was allowed`);
}

describe('the process transition table', () => {
  it.each(ALLOWED)('%s %s: %s leads to %s', (kind, from, event, to) => {
    expect(transition(nameOf(kind), from, event)).toBe(to);
    expect(allows(kind, from, event)).toBe(true);
  });

  it('allows nothing else: every other (kind, state, operation) is FAILED_PRECONDITION', () => {
    const allowed = new Set(ALLOWED.map(([k, f, e]) => `${k} ${f} ${e}`));
    let refused = 0;
    for (const kind of ['task', 'exec'] as const) {
      for (const from of Object.values(ProcessState)) {
        for (const event of Object.values(ProcessEvent)) {
          if (allowed.has(`${kind} ${from} ${event}`)) continue;
          expect(allows(kind, from, event)).toBe(false);
          const err = refusal(nameOf(kind), from, event);
          expect(err.code).toBe(Code.FAILED_PRECONDITION);
          expect(err.message).toContain(`${describeProcess(nameOf(kind))} is ${from}: cannot ${event}`);
          refused++;
        }
      }
    }
    // 2 kinds x 6 states x 15 events, less the allowed pairs.
    expect(refused).toBe(2 * 6 * 15 - ALLOWED.length);
  });

  it('holds no transition the list above does not name', () => {
    const listed = ALLOWED.map(([k, f, e, t]) => `${k} ${f} ${e} ${t}`).sort();
    const inTable = Object.entries(TRANSITIONS)
      .flatMap(([k, states]) =>
        Object.entries(states).flatMap(([f, events]) =>
          Object.entries(events).map(([e, t]) => `${k} ${f} ${e} ${t}`),
        ),
      )
      .sort();
    expect(inTable).toEqual(listed);
  });

  it('refuses a delete of a running task, naming the task, its state and what to do', () => {
    const err = refusal(task, 'running', 'delete');
    expect(err.code).toBe(Code.FAILED_PRECONDITION);
    expect(err.message).toBe('task "web" is running: cannot delete (kill it and wait for its exit first)');
  });

  it('refuses a second pause and a resume of a running task', () => {
    expect(refusal(task, 'paused', 'pause').message).toBe(
      'task "web" is paused: cannot pause (only a running task can be paused)',
    );
    expect(refusal(task, 'running', 'resume').message).toBe(
      'task "web" is running: cannot resume (only a paused task can be resumed)',
    );
  });

  it('refuses a kill of an exec not started yet and an exec in a stopped task', () => {
    expect(refusal(exec, 'created', 'kill').message).toBe(
      'exec "sh" of task "web" is created: cannot kill (start it first)',
    );
    expect(refusal(task, 'stopped', 'exec').message).toBe(
      'task "web" is stopped: cannot exec (exec needs the task running)',
    );
  });

  it('refuses to remove the files of a task that still exists, and a second start', () => {
    expect(refusal(task, 'stopped', 'remove-files').message).toBe(
      'task "web" is stopped: cannot remove-files (delete the task first)',
    );
    expect(refusal(exec, 'running', 'start').code).toBe(Code.FAILED_PRECONDITION);
    expect(refusal(task, 'stopped', 'start').message).toContain('only a created process can be started');
  });

  it('never leaves deleted except to remove files, and never leads back to created', () => {
    for (const [, from, , to] of ALLOWED) if (to === 'created') expect(from).toBe('created');
    expect(Object.keys(TRANSITIONS.task.deleted)).toEqual(['remove-files']);
    expect(Object.keys(TRANSITIONS.exec.deleted)).toEqual([]);
  });
});
