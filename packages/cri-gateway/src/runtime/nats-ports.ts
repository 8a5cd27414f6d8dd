import {
  type Container,
  type ContainerInfo,
  type CreateContainerRequest,
  type ExecRequest,
  type ExitStatus,
  type ImportImageReply,
  type KillRequest,
  type ListContainersReply,
  type ProcessState,
  Service,
  ShimOps,
  type Task,
  TaskOps,
  type UpdateContainerRequest,
} from '@berth/api';
import { call } from '@berth/kit';
import { readCriStreams } from '@berth/shim';
import type { NatsConnection } from 'nats';
import { CRI_NAMESPACE } from '../images/ports.js';
import type { ImageImporter, ShimPort, TaskPort } from './ports.js';

/** The task-service (cluster-wide, any replica), in the CRI namespace; containers go to `node`. */
export function natsTaskPort(nc: NatsConnection, node: string): TaskPort {
  const c = <O>(op: keyof typeof TaskOps, payload: unknown, timeoutMs: number = TaskOps[op]) =>
    call<O>(nc, Service.task, op, payload, { namespace: CRI_NAMESPACE, timeoutMs });
  return {
    createContainer: (req: CreateContainerRequest) =>
      c<Container>('create-container', { ...req, node: req.node ?? node }),
    getContainer: (id) => c<ContainerInfo>('get-container', { id }),
    listContainers: async (labels) =>
      (await c<ListContainersReply>('list-containers', { labels })).containers,
    updateContainer: (req: UpdateContainerRequest) => c<Container>('update-container', req),
    updateTask: async (id, resources) => {
      await c('update', { id, resources });
    },
    deleteContainer: async (id, force) => {
      await c('delete-container', { id, force });
    },
    createTask: (id) => c<Task>('create', { id }),
    start: (id, execId) => c<ProcessState>('start', { id, ...(execId ? { execId } : {}) }),
    kill: async (req: KillRequest) => {
      await c('kill', req);
    },
    // The request waits up to timeoutMs on the service; the NATS request a little longer.
    wait: (id, o) =>
      c<ExitStatus>(
        'wait',
        { id, ...(o.execId ? { execId: o.execId } : {}), ...(o.timeoutMs ? { timeoutMs: o.timeoutMs } : {}) },
        o.timeoutMs ? o.timeoutMs + 5_000 : TaskOps.wait,
      ),
    deleteTask: (id, execId) => c<ExitStatus>('delete', { id, ...(execId ? { execId } : {}) }),
    exec: (req: ExecRequest) => c<ProcessState>('exec', req),
    stats: (id) => c<Record<string, unknown>>('stats', { id }),
  };
}

/** This node's shim (host-local), in the CRI namespace. */
export function natsShimPort(nc: NatsConnection, node: string): ShimPort {
  const opts = (op: keyof typeof ShimOps) => ({ node, namespace: CRI_NAMESPACE, timeoutMs: ShimOps[op] });
  return {
    // The exec log is on this node (the gateway serves its own node's kubelet): reading it here
    // avoids NATS's max_payload (1 MB), which the shim's exec-output reply could not exceed.
    readLog: (logPath, maxBytes) => readCriStreams(logPath, maxBytes),
    reopenLog: async (id) => {
      await call(nc, Service.shim, 'reopen-log', { namespace: CRI_NAMESPACE, id }, opts('reopen-log'));
    },
  };
}

/** The image-service `import` of this node, into the CRI namespace. */
export function natsImageImporter(nc: NatsConnection, node: string): ImageImporter {
  return (path, name) =>
    call<ImportImageReply>(
      nc,
      Service.image,
      'import',
      { path, name },
      { node, namespace: CRI_NAMESPACE, timeoutMs: 300_000 },
    );
}
