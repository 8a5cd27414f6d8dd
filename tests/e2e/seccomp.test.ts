import { existsSync, readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { TaskApi } from '@berth/api';
import { call } from '@berth/kit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ContainerStack, startContainerStack } from './containers-stack.js';

// Seccomp on real containers: the built CLI, the services, runc applying the filter the node's
// shim resolved. Busybox's applets make the syscalls: unshare(2) (refused by the default profile
// without CAP_SYS_ADMIN) and mkdir(2)/mkdirat(2) (refused by a profile of the test's own).
let IMAGE = 'berth.test/busybox:seccomp';
let s: ContainerStack;

beforeAll(async () => {
  s = await startContainerStack();
  IMAGE = (await s.importBusybox(IMAGE)).name;
}, 120_000);
afterAll(async () => s?.stop(), 60_000);

const run = (...args: string[]) => s.berth(args);

/**
 * Whether this host lets a process without CAP_SYS_ADMIN make a user namespace (Debian's
 * unprivileged_userns_clone, Ubuntu's AppArmor restriction, max_user_namespaces): only then can
 * `unshare -r` succeed in an unconfined container that has the default capabilities.
 */
function unprivilegedUserns(): boolean {
  const read = (p: string) => (existsSync(p) ? readFileSync(p, 'utf8').trim() : undefined);
  return (
    read('/proc/sys/kernel/unprivileged_userns_clone') !== '0' &&
    read('/proc/sys/kernel/apparmor_restrict_unprivileged_userns') !== '1' &&
    read('/proc/sys/user/max_user_namespaces') !== '0'
  );
}

/** Prints the seccomp mode (0 none, 2 filter), then the exit code of `cmd` after its output. */
const probe = (cmd: string) => ['sh', '-c', `grep '^Seccomp:' /proc/self/status; ${cmd}; echo "rc=$?"`];

describe('seccomp', () => {
  it('filters every container by default: unshare gets EPERM', async () => {
    const r = await run('run', '--rm', IMAGE, ...probe('unshare -r true'));
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^Seccomp:\t2$/m);
    expect(r.stderr).toContain('Operation not permitted');
    expect(r.stdout).not.toContain('rc=0');
  });

  it('filters exec processes and a non-root user alike', async () => {
    const d = await run('run', '-d', '--name', 'sc', '-u', 'www', IMAGE, 'sleep', '300');
    expect(d.code, d.stderr).toBe(0);
    const ex = await run('exec', 'sc', ...probe('unshare -r true'));
    expect(ex.stdout).toMatch(/^Seccomp:\t2$/m);
    expect(ex.stderr).toContain('Operation not permitted');
    expect((await run('rm', '-f', 'sc')).code).toBe(0);
  });

  it('allows a capability-gated syscall when the container has the capability', async () => {
    // unshare(CLONE_NEWNS) needs CAP_SYS_ADMIN, and the default profile allows unshare with it.
    const r = await run('run', '--rm', '--cap-add', 'SYS_ADMIN', IMAGE, ...probe('unshare -m true'));
    expect(r.stdout).toMatch(/^Seccomp:\t2$/m);
    expect(r.stdout, r.stderr).toContain('rc=0');
    const without = await run('run', '--rm', IMAGE, ...probe('unshare -m true'));
    expect(without.stderr).toContain('Operation not permitted');
  });

  it('applies no filter to a privileged container', async () => {
    const r = await run('run', '--rm', '--privileged', IMAGE, ...probe('unshare -r true'));
    expect(r.stdout).toMatch(/^Seccomp:\t0$/m);
    expect(r.stdout, r.stderr).toContain('rc=0');
  });

  it('applies none with --security-opt seccomp=unconfined', async () => {
    const r = await run(
      'run',
      '--rm',
      '--security-opt',
      'seccomp=unconfined',
      IMAGE,
      ...probe('unshare -r true'),
    );
    expect(r.stdout).toMatch(/^Seccomp:\t0$/m);
    if (unprivilegedUserns()) expect(r.stdout, r.stderr).toContain('rc=0');
  });

  it('applies a profile file: mkdir is refused by it and allowed by default', async () => {
    const file = join(s.root, 'deny-mkdir.json');
    await writeFile(
      file,
      JSON.stringify({
        defaultAction: 'SCMP_ACT_ALLOW',
        archMap: [{ architecture: 'SCMP_ARCH_X86_64', subArchitectures: ['SCMP_ARCH_X86', 'SCMP_ARCH_X32'] }],
        syscalls: [{ names: ['mkdir', 'mkdirat'], action: 'SCMP_ACT_ERRNO', errnoRet: 1 }],
      }),
    );
    const denied = await run(
      'run',
      '--rm',
      '--security-opt',
      `seccomp=${file}`,
      IMAGE,
      ...probe('mkdir /tmp/x'),
    );
    expect(denied.stdout).toMatch(/^Seccomp:\t2$/m);
    expect(denied.stderr).toContain("can't create directory '/tmp/x': Operation not permitted");
    expect(denied.stdout).not.toContain('rc=0');
    const allowed = await run('run', '--rm', IMAGE, ...probe('mkdir /tmp/x'));
    expect(allowed.stdout, allowed.stderr).toContain('rc=0');
  });

  it('reads a localhost profile on the node (as the CRI asks), NOT_FOUND naming a missing one', async () => {
    const file = join(s.root, 'node-deny-mkdir.json');
    await writeFile(
      file,
      JSON.stringify({
        defaultAction: 'SCMP_ACT_ALLOW',
        syscalls: [{ names: ['mkdir', 'mkdirat'], action: 'SCMP_ACT_ERRNO' }],
      }),
    );
    const create = (path: string) =>
      call(
        s.nc,
        TaskApi,
        'create-container',
        { image: IMAGE, node: s.node, cmd: probe('mkdir /tmp/x'), seccomp: { mode: 'localhost', path } },
        { timeoutMs: 60_000 },
      );
    const c = await create(file);
    expect((await run('start', c.id)).code).toBe(0);
    expect((await run('wait', c.id)).stdout).toBe('0\n');
    const logs = await run('logs', c.id);
    expect(logs.stdout).toMatch(/^Seccomp:\t2$/m);
    expect(logs.stderr).toContain("can't create directory '/tmp/x': Operation not permitted");
    expect((await run('rm', c.id)).code).toBe(0);

    const missing = join(s.root, 'no-such-profile.json');
    const m = await create(missing);
    const r = await run('start', m.id);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain(`seccomp profile "${missing}" not found`);
    expect((await run('rm', m.id)).code).toBe(0);
  });

  it('refuses a bad profile file before creating anything, naming the file', async () => {
    const file = join(s.root, 'bad.json');
    await writeFile(file, JSON.stringify({ defaultAction: 'SCMP_ACT_SOMETIMES' }));
    const r = await run('run', '--rm', '--security-opt', `seccomp=${file}`, IMAGE, 'true');
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain(`seccomp profile "${file}": defaultAction`);
    expect((await run('ps', '-aq')).stdout).toBe('');
  });
});
