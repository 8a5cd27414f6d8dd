import { CONTAINER_RECORD_MAX_BYTES, exitCodeOf, PAGE_MAX_BYTES, SnapshotApi, TaskApi } from '@berth/api';
import { call, collectAll } from '@berth/kit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ContainerStack, startContainerStack } from './containers-stack.js';

// Listing is bounded however many containers a namespace holds: 2,000 container records made
// through the task-service's real create path (image resolved by the image-service, rootfs
// snapshot prepared by the snapshot-service, spec generated, record stored), then listed by the
// built CLI over NATS. No task is started: listing reads records, and a record is the same
// whether its task ever ran; network "none" keeps the shim (and runc) out of create.
const COUNT = 2_000;
let s: ContainerStack;
let image = 'berth.test/busybox:latest';

beforeAll(async () => {
  s = await startContainerStack({ only: ['image-service', 'snapshot-service', 'task-service'] });
  image = (await s.importBusybox(image)).name;
}, 120_000);
afterAll(async () => {
  // The stack's stop removes containers one by one through the shim, which is not running here;
  // everything lives under the stack's root and goes with it.
  await s?.kill('task-service', 'SIGTERM');
  await s?.stop();
}, 120_000);

const listSnapshots = async () =>
  (
    await collectAll(
      (input: { cursor?: string }) => call(s.nc, SnapshotApi, 'list', input, { node: s.node }),
      {},
      'snapshots',
    )
  ).map((x) => x.name);

describe('lists that page', () => {
  it(`shows ${COUNT} containers in ps -a, each once, filters across pages`, async () => {
    const started = Date.now();
    let next = 0;
    // A few creates at a time, as several users would: the cores are shared.
    const worker = async () => {
      for (let n = next++; n < COUNT; n = next++) {
        await call(
          s.nc,
          TaskApi,
          'create-container',
          {
            image,
            name: `many-${n}`,
            network: 'none',
            cmd: ['sh', '-c', 'echo one of many; sleep 1000'],
            env: ['A=1', 'B=2'],
            labels: n % 10 === 0 ? { tenth: 'yes', n: String(n) } : { n: String(n) },
          },
          { node: s.node },
        );
      }
    };
    await Promise.all(Array.from({ length: 6 }, worker));
    const createMs = Date.now() - started;

    // One reply is one bounded page, not the namespace.
    const first = await call(s.nc, TaskApi, 'list-containers', {}, { node: s.node });
    const recordBytes = JSON.stringify(first.containers[0]).length;
    expect(first.nextCursor).toBeDefined();
    expect(first.containers.length).toBeLessThan(COUNT);
    expect(JSON.stringify(first).length).toBeLessThanOrEqual(PAGE_MAX_BYTES + 1024);
    // The whole listing would not fit one NATS message: what broke `ps -a` before paging.
    expect(recordBytes * COUNT).toBeGreaterThan(1024 * 1024);

    const listStarted = Date.now();
    const ps = await s.berth(['ps', '-a'], { timeoutMs: 60_000 });
    const psMs = Date.now() - listStarted;
    expect(ps.stderr).toBe('');
    expect(ps.code).toBe(0);
    const rows = ps.stdout.trimEnd().split('\n');
    expect(rows[0]).toMatch(/^CONTAINER ID\s+IMAGE\s+COMMAND/);
    expect(rows).toHaveLength(COUNT + 1);
    const names = rows.slice(1).map((r) => r.trim().split(/\s+/).pop());
    expect(new Set(names).size).toBe(COUNT);
    // Newest first across every page, as the listing's own order says.
    const pagesStarted = Date.now();
    const listed = await collectAll(
      (input: { cursor?: string }) => call(s.nc, TaskApi, 'list-containers', input, { node: s.node }),
      {},
      'containers',
    );
    const pagesMs = Date.now() - pagesStarted;
    const times = listed.map((i) => i.container.createdAt);
    expect(times).toEqual([...times].sort().reverse());
    expect(names).toEqual(listed.map((i) => i.container.name));
    const ids = (await s.berth(['ps', '-aq'])).stdout.trim().split('\n');
    expect(new Set(ids).size).toBe(COUNT);

    // Filtered before paging: every tenth container, across the whole namespace.
    const tenth = await s.berth(['ps', '-a', '--filter', 'label=tenth=yes']);
    expect(tenth.code).toBe(0);
    const tenthNames = tenth.stdout.trimEnd().split('\n').slice(1);
    expect(tenthNames).toHaveLength(COUNT / 10);
    for (const r of tenthNames)
      expect(Number(r.trim().split(/\s+/).pop()?.slice('many-'.length)) % 10).toBe(0);
    console.log(
      `paging: ${COUNT} creates in ${createMs} ms; record ${recordBytes} B; first page ` +
        `${first.containers.length} containers; ps -a in ${psMs} ms; every page over NATS in ${pagesMs} ms`,
    );
  }, 600_000);

  it('refuses a create with 100,000 arguments, and ps -a keeps working', async () => {
    const before = new Set(await listSnapshots());
    const args = Array.from({ length: 100_000 }, () => 'x');
    const r = await s.berth(['create', '--network', 'none', '--name', 'too-big', image, ...args], {
      timeoutMs: 60_000,
    });
    expect(r.code).toBe(exitCodeOf.INVALID_ARGUMENT);
    expect(r.stderr).toMatch(
      new RegExp(`the container config is \\d+ bytes, over the limit of ${CONTAINER_RECORD_MAX_BYTES} bytes`),
    );
    // A request that fits but whose record would not (the spec repeats the command): refused
    // after its snapshot was prepared, which is removed again; the name stays free.
    const near = Array.from({ length: 40_000 }, () => 'xxx');
    const r2 = await s.berth(['create', '--network', 'none', '--name', 'too-big', image, ...near], {
      timeoutMs: 60_000,
    });
    expect(r2.code).toBe(exitCodeOf.INVALID_ARGUMENT);
    expect(r2.stderr).toMatch(/the container record is \d+ bytes, over the limit/);
    expect(new Set(await listSnapshots())).toEqual(before);
    const ok = await s.berth(['create', '--network', 'none', '--name', 'too-big', image, 'true']);
    expect(ok.stderr).toBe('');
    expect(ok.code).toBe(0);

    const ps = await s.berth(['ps', '-a'], { timeoutMs: 60_000 });
    expect(ps.code).toBe(0);
    expect(ps.stdout.trimEnd().split('\n')).toHaveLength(COUNT + 2);
    expect(ps.stdout).toContain('too-big');
  }, 300_000);
});
