import { TaskApi } from '@berth/api';
import { call } from '@berth/kit';
import { describe, expect, it } from 'vitest';
import { CRI_NAMESPACE } from './images/ports.js';
import {
  berthContainers,
  createCtr,
  ctrStatus,
  grpcError,
  INVALID_ARGUMENT,
  type Json,
  rpc,
  runPod,
  until,
  usePodStack,
} from './testdata/pod-fixtures.js';
import { runcIds } from './testdata/runtime-stack.js';

const FAILED_PRECONDITION = 9;

// A container whose command cannot be executed, as containerd 1.6 (crictl 1.26 side by side): its
// StartContainer fails with runc's own cause, and the container is exited with 128, StartError and
// that message, stored (a gateway restart keeps it), so the kubelet sees why in the pod's status.

const stack = usePodStack();

/** The container's state in ListContainers. */
async function listedState(id: string): Promise<unknown> {
  const r = await rpc<{ containers: Json[] }>('ListContainers', { filter: { id } });
  return r.containers.find((c) => c.id === id)?.state;
}

describe('a container whose command cannot be executed', () => {
  it('fails StartContainer with runc cause and is exited with 128, StartError', async () => {
    const pod = await runPod('starterr');
    const id = await createCtr(pod, 'starterr', 'missing', {
      command: ['/no/such/binary'],
      // Sharing the pod's PID namespace, runc logs its cleanup ("cannot toggle freezer") before its error.
      linux: { security_context: { namespace_options: { network: 'POD', pid: 'POD', ipc: 'POD' } } },
    });
    const before = Date.now();
    const err = await grpcError(rpc('StartContainer', { container_id: id }));
    // berth's code for a command runc cannot execute (containerd answers Unknown).
    expect(err.code).toBe(INVALID_ARGUMENT);
    expect(err.details).toContain('/no/such/binary');
    expect(err.details).not.toContain('freezer');
    // At once, with no wait for anything to catch up.
    const st = await ctrStatus(id);
    expect(st).toMatchObject({
      state: 'CONTAINER_EXITED',
      exit_code: 128,
      reason: 'StartError',
      started_at: '0',
    });
    expect(st.message).toContain('/no/such/binary');
    expect(BigInt(String(st.finished_at))).toBeGreaterThanOrEqual(BigInt(before) * 1_000_000n);
    expect(await listedState(id)).toBe('CONTAINER_EXITED');
    // Nothing of the failed start is left: no task record, no runc container.
    const rec = await call(
      stack().nc,
      TaskApi,
      'get-container',
      { id },
      { namespace: CRI_NAMESPACE, timeoutMs: 5000 },
    );
    expect(rec.task).toBeUndefined();
    expect(runcIds(stack().stateRoot)).not.toContain(id);
    const again = await grpcError(rpc('StartContainer', { container_id: id }));
    expect(again.code).toBe(FAILED_PRECONDITION);

    // Stored, not held by this gateway: a new one reports the same.
    await stack().restartGateway();
    expect(await ctrStatus(id)).toMatchObject({
      state: 'CONTAINER_EXITED',
      exit_code: 128,
      reason: 'StartError',
      message: st.message,
      finished_at: st.finished_at,
    });
    expect((await grpcError(rpc('StartContainer', { container_id: id }))).code).toBe(FAILED_PRECONDITION);

    await rpc('RemoveContainer', { container_id: id });
    expect(
      (await rpc<{ containers: Json[] }>('ListContainers', {})).containers.map((c) => c.id),
    ).not.toContain(id);
    await rpc('StopPodSandbox', { pod_sandbox_id: pod });
    await rpc('RemovePodSandbox', { pod_sandbox_id: pod });
    expect(await berthContainers()).toEqual([]);
    // Removed tasks (the pause's) are deleted after the call, as containerd's garbage collector does.
    await until('the removed tasks to be deleted', () => runcIds(stack().stateRoot).length === 0);
  });
});
