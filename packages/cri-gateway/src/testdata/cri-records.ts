import type { ContainerInfo, ImageRecord } from '@berth/api';
import { CriKind, CriLabel } from '../runtime/meta.js';

/**
 * A CRI application container as the task-service lists it, for handler tests: created when no
 * task is given, else with a task in that state (pid 7, fixed times; a stopped one exits
 * `exitCode`, 0 by default). `labels` are the CRI labels kept in its meta.
 */
export function criContainerInfo(
  id: string,
  task?: { status: 'running' | 'stopped'; exitCode?: number },
  labels: Record<string, string> = {},
): ContainerInfo {
  const meta = {
    metadata: { name: 'app', attempt: 0 },
    labels,
    annotations: {},
    image: 'busybox',
    imageRef: 'sha256:abc',
    logPath: '/logs/app.log',
    mounts: [],
    namespaceOptions: { network: 'POD', pid: 'CONTAINER', ipc: 'POD', target_id: '' },
    createdAt: '1000',
  };
  const container = {
    id,
    labels: { [CriLabel.kind]: CriKind.container, [CriLabel.meta]: JSON.stringify(meta) },
    config: {},
    spec: {},
  } as unknown as ContainerInfo['container'];
  if (!task) return { container, status: 'created' } as ContainerInfo;
  const t = {
    id,
    status: task.status,
    pid: 7,
    startedAt: '2026-12-02T01:00:00.000Z',
    ...(task.status === 'stopped'
      ? { exitCode: task.exitCode ?? 0, exitedAt: '2026-12-02T01:00:01.000Z' }
      : {}),
  };
  return { container, task: t, status: task.status } as unknown as ContainerInfo;
}

/** An image record as the image-service gives it, for handler tests (only the fields they read). */
export function criImageRecord(): ImageRecord {
  return {
    name: 'docker.io/library/busybox:1',
    configDigest: 'sha256:c1',
    target: { digest: 'sha256:m1' },
    size: 10,
    config: {},
    updatedAt: '2026-12-02T01:00:00.000Z',
  } as unknown as ImageRecord;
}
