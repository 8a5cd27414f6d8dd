import { BerthError, Code, type ContainerInfo, TaskTopic } from '@berth/api';
import { describe, expect, it } from 'vitest';
import { CRI_NAMESPACE } from '../images/ports.js';
import { ContainerView } from './container-view.js';
import type { EventSource } from './events.js';
import { CriKind, CriLabel } from './meta.js';
import type { TaskPort } from './ports.js';

// The view against a task-service held in a map (the port the gateway's domain talks to), with
// events delivered by hand: what the view answers, and when it asks the task-service.

const NODE = 'n1';

function info(id: string, o: { node?: string; status?: ContainerInfo['status']; pid?: number } = {}) {
  const status = o.status ?? 'created';
  const c = {
    id,
    name: `k8s-ctr-${id}`,
    namespace: CRI_NAMESPACE,
    node: o.node ?? NODE,
    labels: { [CriLabel.kind]: CriKind.container },
    updatedAt: '2026-12-02T01:00:00.000Z',
  } as unknown as ContainerInfo['container'];
  if (status === 'created') return { container: c, status } as ContainerInfo;
  const task = { id, namespace: CRI_NAMESPACE, node: NODE, status, pid: o.pid ?? 10, createdAt: 't0' };
  return { container: c, task, status } as ContainerInfo;
}

/** A container whose task is created, not started yet (pid 10). */
function createdTask(id: string): ContainerInfo {
  const running = info(id, { status: 'running' });
  return { ...running, status: 'created', task: { ...running.task, status: 'created' } } as ContainerInfo;
}

/** A task-service of records in a map; counts the reads that reach it. */
function fakeTasks() {
  const records = new Map<string, ContainerInfo>();
  const reads = { get: 0, list: 0 };
  let hold: Promise<void> | undefined;
  let down = false;
  const unavailable = () => new BerthError(Code.UNAVAILABLE, 'task-service is unavailable');
  const port = {
    getContainer: async (id: string) => {
      reads.get++;
      const r = records.get(id);
      await hold;
      if (down) throw unavailable();
      if (!r) throw new BerthError(Code.NOT_FOUND, `container "${id}" not found`);
      return r;
    },
    listContainers: async () => {
      reads.list++;
      if (down) throw unavailable();
      // As the gateway's port lists: this node's containers only.
      return [...records.values()].filter((i) => i.container.node === NODE);
    },
    start: async (id: string) => {
      const r = records.get(id) as ContainerInfo;
      records.set(id, info(id, { status: 'running', pid: 10 }));
      return { id: r.container.id, status: 'running', pid: 10, startedAt: 's1' };
    },
    deleteContainer: async (id: string) => {
      records.delete(id);
    },
    // A create with start, as StartContainer and RunPodSandbox make it (pid 10).
    createTask: async (id: string) => {
      const task = { id, namespace: CRI_NAMESPACE, node: NODE, status: 'running', pid: 10, createdAt: 't1' };
      const r = records.get(id) as ContainerInfo;
      records.set(id, { ...r, task, status: 'running' } as ContainerInfo);
      return task;
    },
  } as unknown as TaskPort;
  return {
    records,
    reads,
    port,
    holdReads(p: Promise<void> | undefined) {
      hold = p;
    },
    /** Makes every read fail as a stopped or unreachable task-service's would. */
    setDown(d: boolean) {
      down = d;
    },
  };
}

/** An event source the test fires by hand. */
function manualEvents() {
  let handler: Parameters<EventSource>[0] = () => undefined;
  const source: EventSource = (h) => {
    handler = h;
    return () => undefined;
  };
  const fire = (topic: string, event: Record<string, unknown>) =>
    handler({ topic, namespace: CRI_NAMESPACE, timestamp: new Date().toISOString(), event });
  return { source, fire };
}

async function started() {
  const t = fakeTasks();
  t.records.set('a1', info('a1', { status: 'running' }));
  t.records.set('b2', info('b2', { node: 'other' }));
  const ev = manualEvents();
  const view = new ContainerView(t.port, NODE);
  await view.follow(ev.source);
  return { t, ev, view };
}

describe('ContainerView', () => {
  it("answers reads of this node's containers from memory once loaded", async () => {
    const { t, view } = await started();
    const before = { ...t.reads };
    expect((await view.getContainer('a1')).status).toBe('running');
    expect((await view.listContainers({ [CriLabel.kind]: '' })).map((i) => i.container.id)).toEqual(['a1']);
    expect(t.reads).toEqual(before);
    // Another node's container is asked for, never kept.
    expect((await view.getContainer('b2')).container.node).toBe('other');
    expect(t.reads.get).toBe(before.get + 1);
    view.close();
  });

  it('shows a write to the next read, and a deletion to the next list', async () => {
    const { t, view } = await started();
    t.records.set('c3', info('c3'));
    await view.createContainer({} as never).catch(() => undefined);
    expect((await view.getContainer('c3')).status).toBe('created');
    await view.start('c3');
    expect((await view.getContainer('c3')).status).toBe('running');
    await view.deleteContainer('c3', true);
    expect(
      (await view.listContainers({ [CriLabel.kind]: CriKind.container })).map((i) => i.container.id),
    ).toEqual(['a1']);
    await expect(view.getContainer('c3')).rejects.toMatchObject({ code: Code.NOT_FOUND });
    view.close();
  });

  it("takes a write's reply as the record: no re-read, and no wait for its event's refresh", async () => {
    const { t, ev, view } = await started();
    t.records.set('c3', createdTask('c3'));
    ev.fire(TaskTopic.taskCreate, { id: 'c3' });
    expect((await view.getContainer('c3')).status).toBe('created');
    let release!: () => void;
    t.holdReads(
      new Promise<void>((r) => {
        release = r;
      }),
    );
    // The start's own event reaches the gateway before its reply: its refresh is held.
    ev.fire(TaskTopic.taskStart, { id: 'c3' });
    // Refreshes start their read on the next turn (calls until then share it): let it begin.
    await new Promise((r) => setImmediate(r));
    await view.start('c3');
    const reads = t.reads.get;
    expect(await view.getContainer('c3')).toMatchObject({
      status: 'running',
      task: { status: 'running', pid: 10, startedAt: 's1' },
    });
    expect(t.reads.get).toBe(reads);
    release();
    await new Promise((r) => setImmediate(r)); // the held read has been dropped now
    expect((await view.getContainer('c3')).task?.startedAt).toBe('s1');
    t.holdReads(undefined);
    // A task delete is applied from its event: the container is created again, with no task.
    ev.fire(TaskTopic.taskDelete, { id: 'a1' });
    const a1 = await view.getContainer('a1');
    expect(a1.status).toBe('created');
    expect(a1.task).toBeUndefined();
    // A removal drops it; its events ask nothing either.
    await view.deleteContainer('c3', true, true);
    ev.fire(TaskTopic.taskDelete, { id: 'c3' });
    ev.fire(TaskTopic.containerDelete, { id: 'c3' });
    expect(t.reads.get).toBe(reads);
    expect((await view.listContainers({ [CriLabel.kind]: '' })).map((i) => i.container.id)).toEqual(['a1']);
    view.close();
  });

  it("reads nothing for a write's own event arriving after its reply, and reads again for any other", async () => {
    const { t, ev, view } = await started();
    t.records.set('c3', createdTask('c3'));
    expect((await view.getContainer('c3')).status).toBe('created');
    await view.start('c3');
    // The refresh the first read of c3 asked for reads on the next turn: let it.
    await new Promise((r) => setImmediate(r));
    const reads = t.reads.get;
    // The events of the create and the start (pid 10), after their replies set the record.
    ev.fire(TaskTopic.containerCreate, { id: 'c3' });
    ev.fire(TaskTopic.taskCreate, { id: 'c3', pid: 10 });
    ev.fire(TaskTopic.taskStart, { id: 'c3', pid: 10 });
    expect((await view.getContainer('c3')).status).toBe('running');
    expect(t.reads.get).toBe(reads);
    // A start of another process (a pid the record does not show), an update: read again.
    ev.fire(TaskTopic.taskStart, { id: 'c3', pid: 11 });
    await view.getContainer('c3');
    expect(t.reads.get).toBe(reads + 1);
    ev.fire(TaskTopic.containerUpdate, { id: 'c3' });
    await view.getContainer('c3');
    expect(t.reads.get).toBe(reads + 2);
    // An update whose record the view holds (its updatedAt): nothing to read; another one: read.
    const kept = await view.getContainer('c3');
    ev.fire(TaskTopic.containerUpdate, { id: 'c3', updatedAt: kept.container.updatedAt });
    await view.getContainer('c3');
    expect(t.reads.get).toBe(reads + 2);
    ev.fire(TaskTopic.containerUpdate, { id: 'c3', updatedAt: '2026-12-02T02:00:00.001Z' });
    await view.getContainer('c3');
    expect(t.reads.get).toBe(reads + 3);
    // A container the view has no record of is read whatever the event.
    t.records.set('d4', info('d4'));
    ev.fire(TaskTopic.containerCreate, { id: 'd4' });
    expect((await view.getContainer('d4')).status).toBe('created');
    expect(t.reads.get).toBe(reads + 4);
    view.close();
  });

  it('reads nothing for the task events of a create with start in flight through it', async () => {
    const { t, ev, view } = await started();
    t.records.set('d4', info('d4', { status: 'created' }));
    ev.fire(TaskTopic.containerCreate, { id: 'd4' });
    await view.getContainer('d4');
    const inner = t.port.createTask;
    let go!: () => void;
    const gate = new Promise<void>((r) => {
      go = r;
    });
    t.port.createTask = async (id, o) => {
      // The task-service announces the create and the start before its reply leaves.
      ev.fire(TaskTopic.taskCreate, { id, pid: 10 });
      ev.fire(TaskTopic.taskStart, { id, pid: 10 });
      await gate;
      return inner(id, o);
    };
    const reads = t.reads.get;
    const created = view.createTask('d4', { start: true } as never);
    await new Promise((r) => setImmediate(r));
    go();
    await created;
    expect(await view.getContainer('d4')).toMatchObject({ status: 'running', task: { pid: 10 } });
    expect(t.reads.get).toBe(reads);
    // The same events with no write in flight are read.
    ev.fire(TaskTopic.taskStart, { id: 'a1', pid: 99 });
    await view.getContainer('a1');
    expect(t.reads.get).toBe(reads + 1);
    view.close();
  });

  it("keeps what the node resolved for a task's process (user, groups, capabilities) from the create's reply", async () => {
    const { t, view } = await started();
    const spec = { process: { args: ['top'], user: { uid: 0, gid: 0 } } };
    const created = info('e5');
    t.records.set('e5', { ...created, container: { ...created.container, spec } } as ContainerInfo);
    // The first read asks the task-service and starts keeping it; the second waits for that.
    await view.getContainer('e5');
    await view.getContainer('e5');
    const resolved = { user: { uid: 33, gid: 33, additionalGids: [33, 50] }, capabilities: ['CAP_KILL'] };
    const inner = t.port.createTask;
    t.port.createTask = async (id, o) => ({ ...(await inner(id, o)), resolved });
    const reads = t.reads.get;
    const reply = await view.createTask('e5', { start: true });
    expect(reply.resolved).toEqual(resolved);
    const kept = await view.getContainer('e5');
    expect(t.reads.get).toBe(reads);
    expect(kept.status).toBe('running');
    expect(kept.task).not.toHaveProperty('resolved');
    expect(kept.container.spec.process).toEqual({
      args: ['top'],
      user: resolved.user,
      capabilities: { bounding: ['CAP_KILL'], effective: ['CAP_KILL'], permitted: ['CAP_KILL'] },
    });
    view.close();
  });

  it('keeps an exit announced before the view held its task (a create with start of a process that exits at once)', async () => {
    const { t, ev, view } = await started();
    t.records.set('c3', info('c3'));
    expect((await view.getContainer('c3')).task).toBeUndefined();
    // The create's events and the exit reach the gateway before the create's reply.
    ev.fire(TaskTopic.taskCreate, { id: 'c3', pid: 10 });
    ev.fire(TaskTopic.taskStart, { id: 'c3', pid: 10 });
    ev.fire(TaskTopic.taskExit, { id: 'c3', pid: 10, exitCode: 3, exitedAt: 'x1' });
    await view.createTask('c3', { start: true });
    expect(await view.getContainer('c3')).toMatchObject({
      status: 'stopped',
      task: { status: 'stopped', pid: 10, exitCode: 3, exitedAt: 'x1' },
    });
    // Applied once: a later task with that pid is not ended by it.
    await view.createTask('c3', { start: true });
    expect((await view.getContainer('c3')).status).toBe('stopped');
    view.close();
  });

  it('keeps an exit applied before the reply of the create that started its task', async () => {
    const { t, ev, view } = await started();
    t.records.set('c3', createdTask('c3'));
    expect((await view.getContainer('c3')).task?.status).toBe('created');
    ev.fire(TaskTopic.taskExit, { id: 'c3', pid: 10, exitCode: 0, exitedAt: 'x2' });
    await view.createTask('c3', { start: true });
    expect(await view.getContainer('c3')).toMatchObject({ status: 'stopped', task: { exitCode: 0 } });
    view.close();
  });

  it('takes an exit from its event and keeps it over a refresh that read the record before it was recorded', async () => {
    const { t, ev, view } = await started();
    ev.fire(TaskTopic.taskExit, {
      id: 'a1',
      pid: 10,
      exitCode: 137,
      exitedAt: 'x',
      node: NODE,
      namespace: CRI_NAMESPACE,
    });
    const got = await view.getContainer('a1');
    expect(got.status).toBe('stopped');
    expect(got.task).toMatchObject({ exitCode: 137, reason: 'Error' });
    // The task-service still says running (it records the exit a moment later): the exit stays.
    ev.fire(TaskTopic.taskPaused, { id: 'a1' });
    expect((await view.getContainer('a1')).status).toBe('stopped');
    // An exit of another process (another pid) is not this task's.
    t.records.set('d4', info('d4', { status: 'running', pid: 20 }));
    ev.fire(TaskTopic.taskStart, { id: 'd4' });
    ev.fire(TaskTopic.taskExit, {
      id: 'd4',
      pid: 99,
      exitCode: 0,
      exitedAt: 'x',
      node: NODE,
      namespace: CRI_NAMESPACE,
    });
    expect((await view.getContainer('d4')).status).toBe('running');
    view.close();
  });

  it("keeps an exit whose event came before the start's reply (a process that exits at once)", async () => {
    const { t, ev, view } = await started();
    t.records.set('e5', createdTask('e5'));
    ev.fire(TaskTopic.taskCreate, { id: 'e5' });
    expect((await view.getContainer('e5')).task?.status).toBe('created');
    let exited!: () => void;
    const inner = t.port.start;
    t.port.start = async (id: string) => {
      const reply = await inner(id);
      exited = () =>
        ev.fire(TaskTopic.taskExit, {
          id: 'e5',
          pid: 10,
          exitCode: 0,
          exitedAt: 'x',
          node: NODE,
          namespace: CRI_NAMESPACE,
        });
      exited();
      return reply;
    };
    await view.start('e5');
    expect(exited).toBeDefined();
    expect(await view.getContainer('e5')).toMatchObject({
      status: 'stopped',
      task: { status: 'stopped', exitCode: 0, reason: 'Completed' },
    });
    view.close();
  });

  it('never lets an older refresh land over a newer one', async () => {
    const { t, ev, view } = await started();
    let release!: () => void;
    t.holdReads(
      new Promise<void>((r) => {
        release = r;
      }),
    );
    ev.fire(TaskTopic.taskStart, { id: 'a1' }); // reads "running", held
    t.holdReads(undefined);
    t.records.set('a1', info('a1', { status: 'paused' }));
    ev.fire(TaskTopic.taskPaused, { id: 'a1' }); // reads "paused", lands first
    expect((await view.getContainer('a1')).status).toBe('paused');
    release();
    await new Promise((r) => setImmediate(r)); // the held read has landed (or been dropped) now
    expect((await view.getContainer('a1')).status).toBe('paused');
    view.close();
  });

  it('never lists without a container whose refresh failed: it asks the task-service until a resync lands it', async () => {
    const { t, ev, view } = await started();
    const ids = async () => (await view.listContainers({ [CriLabel.kind]: '' })).map((i) => i.container.id);
    // The task-service stops answering (SIGSTOPped, say) while a1 is being refreshed.
    t.setDown(true);
    ev.fire(TaskTopic.taskStart, { id: 'a1' });
    // Unknown is not gone: no answer rather than a list without it (a pod missing from it
    // would have its network torn down by the gateway's collection).
    await expect(ids()).rejects.toMatchObject({ code: Code.UNAVAILABLE });
    t.setDown(false);
    expect(await ids()).toEqual(['a1']);
    // That list started a resync: once it has landed, lists answer from memory again.
    const listed = () => t.reads.list;
    const before = listed();
    await view.resync();
    expect(await ids()).toEqual(['a1']);
    expect(listed()).toBe(before + 1);
    view.close();
  });

  it('drops on resync what was deleted without an event reaching it, and adds what was created', async () => {
    const { t, view } = await started();
    t.records.delete('a1');
    t.records.set('e5', info('e5'));
    await view.resync();
    expect((await view.listContainers({ [CriLabel.kind]: '' })).map((i) => i.container.id)).toEqual(['e5']);
    view.close();
  });

  it('reads nothing for the events of a write in flight that its reply shows, and reads again for one it does not', async () => {
    const { t, ev, view } = await started();
    t.records.set('c3', info('c3'));
    await view.getContainer('c3');
    // The second read waits for the refresh the first (of a container not kept yet) started.
    expect((await view.getContainer('c3')).task).toBeUndefined();
    const reads = t.reads.get;
    // A create with start announces its task's create and start before it replies.
    const createTask = t.port.createTask;
    t.port.createTask = async (id, opts) => {
      ev.fire(TaskTopic.taskCreate, { id, pid: 10 });
      ev.fire(TaskTopic.taskStart, { id, pid: 10 });
      await new Promise((r) => setImmediate(r));
      return createTask(id, opts);
    };
    await view.createTask('c3', { start: true });
    expect(await view.getContainer('c3')).toMatchObject({ status: 'running', task: { pid: 10 } });
    expect(t.reads.get).toBe(reads);
    // An event the reply does not show (another process, pid 11) is read again once it lands.
    t.records.set('c3', info('c3'));
    ev.fire(TaskTopic.taskDelete, { id: 'c3' });
    expect((await view.getContainer('c3')).task).toBeUndefined();
    const before = t.reads.get;
    t.port.createTask = async (id, opts) => {
      ev.fire(TaskTopic.taskStart, { id, pid: 11 });
      await new Promise((r) => setImmediate(r));
      return createTask(id, opts);
    };
    await view.createTask('c3', { start: true });
    await view.getContainer('c3');
    expect(t.reads.get).toBeGreaterThan(before);
    view.close();
  });

  it("reads nothing for a create's own event that arrives before its reply, and reads one whose reply was lost", async () => {
    const { t, ev, view } = await started();
    const reads = t.reads.get;
    const port = t.port as unknown as { createContainer: TaskPort['createContainer'] };
    port.createContainer = async (req) => {
      const c = info('f6').container;
      t.records.set('f6', { container: c, status: 'created' });
      ev.fire(TaskTopic.containerCreate, { id: 'f6', name: req.name });
      await new Promise((r) => setImmediate(r));
      return c;
    };
    const req = { name: 'k8s-ctr-f6', image: 'busybox' } as Parameters<TaskPort['createContainer']>[0];
    expect((await view.createContainer(req)).id).toBe('f6');
    expect((await view.getContainer('f6')).status).toBe('created');
    expect(t.reads.get).toBe(reads);
    // The container was made, but its reply never came: the id its event named is read.
    port.createContainer = async (r) => {
      t.records.set('g7', { container: info('g7').container, status: 'created' });
      ev.fire(TaskTopic.containerCreate, { id: 'g7', name: r.name });
      throw new BerthError(Code.DEADLINE_EXCEEDED, 'task-service create-container timed out');
    };
    await expect(view.createContainer({ ...req, name: 'k8s-ctr-g7' })).rejects.toMatchObject({
      code: Code.DEADLINE_EXCEEDED,
    });
    expect((await view.getContainer('g7')).status).toBe('created');
    expect(t.reads.get).toBe(reads + 1);
    view.close();
  });
});
