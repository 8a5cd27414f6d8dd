import {
  type CreateContainerRequest,
  type ExecRequest,
  ImageApi,
  type KillRequest,
  ShimApi,
  TaskApi,
  type UpdateContainerRequest,
} from '@berth/api';
import { call, client, collectAll } from '@berth/kit';
import { readCriOutput } from '@berth/shim/cri-log';
import type { NatsConnection } from 'nats';
import { CRI_NAMESPACE } from '../images/ports.js';
import type { ShimNetworkPort } from './cni-network.js';
import type { ImageImporter, ShimPort, TaskPort } from './ports.js';

/** The task-service (cluster-wide, any replica), in the CRI namespace; containers go to `node`. */
export function natsTaskPort(nc: NatsConnection, node: string): TaskPort {
  const tasks = client(nc, TaskApi, { namespace: CRI_NAMESPACE });
  return {
    createContainer: (req: CreateContainerRequest) =>
      tasks['create-container']({ ...req, node: req.node ?? node }),
    getContainer: (id) => tasks['get-container']({ id }),
    // Every page, this node's only: a cluster's nodes share the namespace, each kubelet sees its own
    // node; the CRI lists (and their filters by id, state, labels) need the whole set.
    listContainers: (labels) => collectAll(tasks['list-containers'], { labels, node }, 'containers'),
    updateContainer: (req: UpdateContainerRequest) => tasks['update-container'](req),
    updateTask: async (id, resources) => {
      await tasks.update({ id, resources });
    },
    deleteContainer: async (id, force, background) => {
      await tasks['delete-container']({ id, force, ...(background ? { background } : {}) });
    },
    createTask: (id, opts) =>
      tasks.create({
        id,
        ...(opts?.start ? { start: true } : {}),
        ...(opts?.netnsPod ? { netnsPod: opts.netnsPod } : {}),
      }),
    start: (id, execId) => tasks.start({ id, ...(execId ? { execId } : {}) }),
    kill: async (req: KillRequest) => {
      await tasks.kill(req);
    },
    // The request waits up to timeoutMs on the service; the NATS request a little longer.
    wait: (id, o) =>
      tasks.wait(
        { id, ...(o.execId ? { execId: o.execId } : {}), ...(o.timeoutMs ? { timeoutMs: o.timeoutMs } : {}) },
        o.timeoutMs ? { timeoutMs: o.timeoutMs + 5_000 } : {},
      ),
    deleteTask: (id, execId) => tasks.delete({ id, ...(execId ? { execId } : {}) }),
    exec: (req: ExecRequest) => tasks.exec(req),
    stats: (id) => tasks.stats({ id }),
  };
}

/** This node's shim (host-local), in the CRI namespace. */
export function natsShimPort(nc: NatsConnection, node: string): ShimPort {
  const shim = client(nc, ShimApi, { node, namespace: CRI_NAMESPACE });
  return {
    // The exec log is on this node (the gateway serves its own node's kubelet): reading it here
    // keeps its bytes as they are and avoids NATS's max_payload (1 MiB), which ExecSync's 16 MiB
    // per stream would exceed many times over in the shim's exec-output reply.
    readLog: (logPath, maxBytesPerStream) => readCriOutput(logPath, maxBytesPerStream),
    reopenLog: async (id) => {
      await shim['reopen-log']({ namespace: CRI_NAMESPACE, id });
    },
  };
}

/** This node's shim's pod networking (network-* ops); the shim keeps every namespace and lease. */
export function natsShimNetworkPort(nc: NatsConnection, node: string): ShimNetworkPort {
  const shim = client(nc, ShimApi, { node, namespace: CRI_NAMESPACE });
  return {
    netns: async (podId) => (await shim['network-netns']({ podId })).netnsPath,
    setup: (podId, req) => shim['network-setup']({ podId, ...req }),
    teardown: async (podId) => {
      await shim['network-teardown']({ podId, force: false });
    },
    list: () => shim['network-list']({}),
    podCidr: (cidrs) => shim['network-pod-cidr']({ cidrs }),
  };
}

/** The image-service `import` of this node, into the CRI namespace. */
export function natsImageImporter(nc: NatsConnection, node: string): ImageImporter {
  return (path, name) =>
    call(nc, ImageApi, 'import', { path, name }, { node, namespace: CRI_NAMESPACE, timeoutMs: 300_000 });
}
