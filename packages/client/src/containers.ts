import {
  type Container,
  type ContainerInfo,
  type CreateContainerRequest,
  type ListContainersRequest,
  type ProcessState,
  type Resources,
  TaskApi,
} from '@berth/api';
import { collectAll } from '@berth/kit/paging';
import type { RequestOptions, Scope } from './scope.js';

/**
 * What a container is created from: an image already on the node (pull it first) and the
 * options of `berth create` (cmd, env, mounts, resources, user, network...). `node` defaults to
 * the connection's node.
 */
export type ContainerSpec = Omit<CreateContainerRequest, 'node'> & { node?: string };

/** The containers of the namespace (the cluster-wide task-service): metadata, as containerd's. */
export class Containers {
  constructor(private readonly scope: Scope) {}

  /** Creates a container: resolves the image on the node, prepares its rootfs, writes its OCI spec. */
  create(spec: ContainerSpec, opts?: RequestOptions): Promise<Container> {
    return this.scope.call(
      TaskApi,
      'create-container',
      { ...spec, node: spec.node ?? this.scope.node },
      opts,
    );
  }

  /**
   * Creates a container and its task and starts it, as `berth run -d`; returns the container and
   * the state of its started process. If the task cannot be created or started the container is
   * removed again, so a failure leaves nothing behind.
   */
  async run(spec: ContainerSpec): Promise<{ container: Container; process: ProcessState }> {
    const container = await this.create(spec);
    try {
      await this.scope.call(TaskApi, 'create', { id: container.id });
      const process = await this.scope.call(TaskApi, 'start', { id: container.id });
      return { container, process };
    } catch (err) {
      await this.scope
        .call(TaskApi, 'delete-container', { id: container.id, force: true })
        .catch(() => undefined);
      throw err;
    }
  }

  /** One container and its task, by full id, unique id prefix or name; NOT_FOUND when absent. */
  get(id: string, opts?: RequestOptions): Promise<ContainerInfo> {
    return this.scope.call(TaskApi, 'get-container', { id }, opts);
  }

  /**
   * Containers matching every filter given (labels: exact value, "" only has to exist), newest
   * first: every page of the listing, fetched one after the other.
   */
  async list(filter: ListContainersRequest = {}, opts?: RequestOptions): Promise<ContainerInfo[]> {
    const page = (input: ListContainersRequest) => this.scope.call(TaskApi, 'list-containers', input, opts);
    return collectAll(page, filter, 'containers');
  }

  /** Merges labels ("" removes one) and updates resources (a live task's too). */
  update(id: string, change: { labels?: Record<string, string>; resources?: Resources }): Promise<Container> {
    return this.scope.call(TaskApi, 'update-container', { id, ...change });
  }

  /** Removes a container and its snapshot; `force` kills and deletes a live task first. */
  async delete(id: string, o: { force?: boolean } = {}): Promise<void> {
    await this.scope.call(TaskApi, 'delete-container', { id, ...o });
  }
}
