import { describe, expect, it } from 'vitest';
import type { CgroupSupport } from '../cgroup-support.js';
import { checkName } from './paths.js';
import { prepareSpec } from './spec.js';
import { normalizeSignal, runtimeFailure } from './util.js';

/** This host's kind (cgroup v1 hybrid, swap accounted) and a cgroup v2 one, for the spec alone. */
const V1: CgroupSupport = { version: 1, swapAccounting: true };
const V2: CgroupSupport = { version: 2, swapAccounting: true };

describe('prepareSpec', () => {
  const base = {
    process: { args: ['sh'], terminal: true },
    root: { path: 'rootfs', readonly: true },
    linux: {},
  };

  it('points root at the bundle rootfs, keeps readonly, sets terminal and a default cgroups path', () => {
    const { spec } = prepareSpec(base, {
      ns: 'default',
      id: 'abc',
      rootfs: '/b/rootfs',
      terminal: false,
      cgroups: V1,
    });
    expect(spec.root).toEqual({ path: '/b/rootfs', readonly: true });
    expect((spec.process as { terminal: boolean }).terminal).toBe(false);
    expect((spec.linux as { cgroupsPath: string }).cgroupsPath).toBe('/berth/default/abc');
    expect(base.root.path).toBe('rootfs');
  });

  it('keeps a given cgroups path; without mounts it needs an absolute root.path', () => {
    const withPath = { ...base, linux: { cgroupsPath: '/custom/x' }, root: { path: '/abs' } };
    const { spec } = prepareSpec(withPath, {
      ns: 'n',
      id: 'i',
      rootfs: undefined,
      terminal: true,
      cgroups: V1,
    });
    expect((spec.linux as { cgroupsPath: string }).cgroupsPath).toBe('/custom/x');
    expect((spec.root as { path: string }).path).toBe('/abs');
    expect(() =>
      prepareSpec(base, { ns: 'n', id: 'i', rootfs: undefined, terminal: false, cgroups: V1 }),
    ).toThrow(/absolute/);
  });

  it('writes linux.resources.unified and memory.swap into config.json on a cgroup v2 node', () => {
    const resources = { memory: { limit: 64 << 20, swap: 128 << 20 }, unified: { 'memory.oom.group': '1' } };
    const input = { ...base, linux: { resources } };
    const { spec } = prepareSpec(input, { ns: 'n', id: 'i', rootfs: '/r', terminal: false, cgroups: V2 });
    expect((spec.linux as { resources: unknown }).resources).toEqual(resources);
  });

  it('refuses unified resources on cgroup v1 and a swap limit without swap accounting, naming them', () => {
    const opts = { ns: 'n', id: 'i', rootfs: '/r', terminal: false };
    const unified = { 'memory.oom.group': '1', 'memory.swap.max': '0' };
    const withUnified = { ...base, linux: { resources: { unified } } };
    expect(() => prepareSpec(withUnified, { ...opts, cgroups: V1 })).toThrow(
      expect.objectContaining({
        code: 'FAILED_PRECONDITION',
        message:
          'task "i": spec linux.resources.unified: "memory.oom.group", "memory.swap.max" are cgroup v2 ' +
          "unified resources, but this node's cgroups are v1: runc cannot apply unified resources there",
      }),
    );
    const withSwap = { ...base, linux: { resources: { memory: { limit: 64 << 20, swap: -1 } } } };
    expect(() => prepareSpec(withSwap, { ...opts, cgroups: { version: 1, swapAccounting: false } })).toThrow(
      expect.objectContaining({
        code: 'FAILED_PRECONDITION',
        message: expect.stringContaining('linux.resources.memory.swap: a swap limit was asked for'),
      }),
    );
    expect(() => prepareSpec(withSwap, { ...opts, cgroups: V1 })).not.toThrow();
  });

  it('refuses a spec without a command', () => {
    expect(() =>
      prepareSpec(
        { process: { args: [] } },
        { ns: 'n', id: 'i', rootfs: '/r', terminal: false, cgroups: V1 },
      ),
    ).toThrow(/process.args/);
  });
});

describe('names, signals, runtime errors', () => {
  it('accepts ids and namespaces that are safe path components', () => {
    for (const ok of ['default', 'k8s.io', 'a'.repeat(64), 'exec-1_a+b'])
      expect(() => checkName('id', ok)).not.toThrow();
    for (const bad of ['', '..', '.hidden', 'a/b', 'x y', 'a'.repeat(129)])
      expect(() => checkName('id', bad)).toThrow();
  });

  it('normalizes signal names and numbers', () => {
    expect(normalizeSignal('TERM')).toBe('SIGTERM');
    expect(normalizeSignal('sigkill')).toBe('SIGKILL');
    expect(normalizeSignal('9')).toBe(9);
    expect(normalizeSignal(15)).toBe(15);
    expect(() => normalizeSignal('SIGNOPE')).toThrow(/unknown signal/);
  });

  it('maps a missing command to INVALID_ARGUMENT and other runc failures to FAILED_PRECONDITION', () => {
    const line =
      'time="2026-11-28T16:00:00Z" level=error msg="runc create failed: unable to start container process: exec: \\"nope\\": executable file not found in $PATH"';
    const e = runtimeFailure('task "x": runc create failed', line);
    expect(e.code).toBe('INVALID_ARGUMENT');
    expect(e.message).toContain('exec: "nope": executable file not found');
    expect(runtimeFailure('w', 'msg="cgroup mount failed"').code).toBe('FAILED_PRECONDITION');
    expect(runtimeFailure('w', undefined).message).toBe('w: unknown error');
  });

  // runc 1.1.5's stderr as conmon relays it (captured here), for a container sharing a PID namespace
  // whose command is missing: runc's cleanup warnings come before its error.
  it("names runc's first error, not the cleanup warnings logged before it", () => {
    const stderr = [
      'time="2026-12-04T06:45:00Z" level=warning msg="cannot toggle freezer: cgroups not configured for container"',
      'time="2026-12-04T06:45:00Z" level=warning msg="cannot toggle freezer: cgroups not configured for container"',
      'time="2026-12-04T06:45:00Z" level=warning msg="lstat : no such file or directory"',
      'time="2026-12-04T06:45:00Z" level=error msg="runc create failed: unable to start container process: exec: \\"/no/such/binary\\": stat /no/such/binary: no such file or directory"',
      'runc create failed: unable to start container process: exec: "/no/such/binary": stat /no/such/binary: no such file or directory',
      '',
    ].join('\n');
    const e = runtimeFailure('task "x": runc create failed', stderr);
    expect(e.message).toBe(
      'task "x": runc create failed: runc create failed: unable to start container process: exec: "/no/such/binary": stat /no/such/binary: no such file or directory',
    );
    expect(e.code).toBe('INVALID_ARGUMENT');
    // nsexec's fatal line is the cause; the error after it is what runc saw of it.
    const nsexec = [
      'time="2026-12-04T06:44:57Z" level=fatal msg="nsexec-1[4503]: failed to open /proc/1/ns/pid: Permission denied"',
      'time="2026-12-04T06:44:57Z" level=fatal msg="nsexec-0[4501]: failed to sync with stage-1: next state: Invalid argument"',
      'time="2026-12-04T06:44:57Z" level=warning msg="cannot toggle freezer: cgroups not configured for container"',
      'time="2026-12-04T06:44:57Z" level=error msg="runc create failed: unable to start container process: can\'t get final child\'s PID from pipe: EOF"',
    ].join('\n');
    expect(runtimeFailure('w', nsexec).message).toBe(
      'w: nsexec-1[4503]: failed to open /proc/1/ns/pid: Permission denied',
    );
    // runc --log-format json lines, and a runtime that says nothing but warnings.
    const json = [
      '{"level":"warning","msg":"cannot toggle freezer: cgroups not configured for container","time":"t"}',
      '{"level":"error","msg":"exec: \\"nosuchcmd\\": executable file not found in $PATH","time":"t"}',
    ].join('\n');
    expect(runtimeFailure('w', json).message).toBe(
      'w: exec: "nosuchcmd": executable file not found in $PATH',
    );
    expect(runtimeFailure('w', 'time="t" level=warning msg=only').message).toBe('w: only');
  });
});
