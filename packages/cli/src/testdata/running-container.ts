import type { ContainerInfo } from '@berth/api';

/**
 * A running busybox container "web" on node n1 (pid 42), as the task-service's get-container
 * answers it: what the CLI tests that script a task-service answer about one container.
 */
export function runningContainer(
  id: string,
  o: { createdAt?: string; startedAt?: string } = {},
): ContainerInfo {
  const now = new Date().toISOString();
  return {
    container: {
      id,
      namespace: 'default',
      name: 'web',
      image: { name: 'docker.io/library/busybox:1.36', digest: `sha256:${'0'.repeat(64)}` },
      node: 'n1',
      spec: { process: { args: ['sleep', '300'] } },
      snapshotKey: `default/${id}`,
      labels: {},
      runtime: { name: 'io.containerd.runc.v2' },
      io: { terminal: false, stdin: false },
      stopSignal: 'SIGTERM',
      config: { image: 'busybox:1.36' },
      createdAt: o.createdAt ?? now,
      updatedAt: now,
    },
    task: {
      id,
      namespace: 'default',
      node: 'n1',
      status: 'running',
      pid: 42,
      createdAt: now,
      ...(o.startedAt ? { startedAt: o.startedAt } : {}),
    },
    status: 'running',
  };
}
