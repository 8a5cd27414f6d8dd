import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import {
  BerthError,
  Code,
  type ContainerInfo,
  type CreateContainerRequest,
  type ImageRecord,
  toBerthError,
} from '@berth/api';
import { type CgroupSupport, hostCgroupSupport } from '@berth/shim/cgroup-support';
import { criImageNames } from '../images/cri-image.js';
import type { ImagePort } from '../images/ports.js';
import { resolveImage } from '../images/resolve.js';
import { chooseCriId, foreignIdError, mayHaveMade, removeMade } from './chosen-id.js';
import { containerRequest, nodeResources, parseContainerConfig, parseResources } from './container-spec.js';
import { containerState, startFailureOf, toContainerStatus, toCriContainer } from './cri-status.js';
import {
  type ContainerMeta,
  CriKind,
  CriLabel,
  kindOf,
  metaOf,
  NsMode,
  nowNs,
  type StartFailure,
} from './meta.js';
import { notFoundAs, type PodRuntime, type RuntimeDeps } from './pods.js';
import type { ShimPort } from './ports.js';
import { ignoreGone, stopTask } from './stop.js';
import { stringList, stringMap } from './validate.js';

/**
 * Most bytes ExecSync keeps of each stream, stdout and stderr independently: containerd's
 * (maxStreamSize, the CVE-2022-31030 fix); the rest of a stream is dropped. As in containerd, a
 * reply holding that much is over the 16 MiB gRPC message limit and fails RESOURCE_EXHAUSTED: the
 * cap bounds the gateway's memory, and no caller is handed output silently cut short.
 */
export const EXEC_SYNC_MAX_STREAM_BYTES = 16 * 1024 * 1024;

/** How long a timed-out exec may take to die of SIGKILL. */
const EXEC_KILL_WAIT_MS = 10_000;

/** CRI ListContainers filter, as on the wire. */
export interface ContainerFilter {
  id?: string;
  state?: { state: string } | null;
  pod_sandbox_id?: string;
  label_selector?: Record<string, string>;
}

/** What the container runtime needs beyond the pod runtime's dependencies. */
export interface ContainerDeps extends RuntimeDeps {
  images: ImagePort;
  shim: ShimPort;
  /** This node's cgroup support (its cgroup version, swap accounting); the host's by default. */
  cgroups?: () => Promise<CgroupSupport>;
}

/**
 * CRI containers as task-service containers joined to their pod's pause container: create,
 * start, stop, remove, status, list, exec-sync, resource updates and log reopening.
 */
export class ContainerRuntime {
  /**
   * The names (the task-service's, one per pod, name and attempt) of this gateway's creates under
   * way: a second create of a name while the first is still running is refused at once, before it
   * makes anything on the host, as containerd's name reservation does.
   */
  private readonly creating = new Set<string>();

  constructor(
    private readonly d: ContainerDeps,
    private readonly pods: PodRuntime,
  ) {}

  /** The container with this id (or unique prefix); NOT_FOUND when absent or a pod's pause. */
  async get(id: string): Promise<ContainerInfo> {
    const info = await this.d.tasks.getContainer(id).catch((err: unknown) => {
      throw notFoundAs(err, `container "${id}" not found`);
    });
    if (kindOf(info.container) !== CriKind.container) {
      throw new BerthError(Code.NOT_FOUND, `container "${id}" not found`);
    }
    return info;
  }

  /** CreateContainer: a container in a ready pod; its task is made by StartContainer. */
  async create(podSandboxId: string, rawConfig: unknown): Promise<string> {
    if (!podSandboxId) throw new BerthError(Code.INVALID_ARGUMENT, 'pod_sandbox_id is required');
    const sb = await this.pods.get(podSandboxId);
    const parsed = parseContainerConfig(rawConfig, sb.meta.logDirectory);
    const node = await this.nodeCgroups();
    const cfg = { ...parsed, resources: nodeResources(parsed.resources, node, 'config.linux.resources') };
    const sid = sb.info.container.id;
    if (sb.info.status !== 'running' || !sb.info.task?.pid) {
      throw new BerthError(
        Code.FAILED_PRECONDITION,
        `pod sandbox ${sid} is not ready: cannot create containers in it`,
      );
    }
    let targetPid: number | undefined;
    if (cfg.namespaceOptions.pid === NsMode.TARGET) {
      const target = await this.get(cfg.namespaceOptions.target_id);
      if (target.status !== 'running' || !target.task?.pid) {
        throw new BerthError(
          Code.FAILED_PRECONDITION,
          `target container ${target.container.id} is not running`,
        );
      }
      targetPid = target.task.pid;
    }
    const image = await resolveImage(this.d.images, cfg.image);
    if (!image) throw new BerthError(Code.NOT_FOUND, `image "${cfg.image}" not found on this node`);
    const names = criImageNames(this.d.images.listNow?.() ?? (await this.d.images.list()), image);
    const meta: ContainerMeta = {
      metadata: cfg.metadata,
      labels: cfg.labels,
      annotations: cfg.annotations,
      image: names.tag ?? cfg.image,
      imageRef: image.configDigest,
      ...(names.digestRef ? { imageDigestRef: names.digestRef } : {}),
      ...(cfg.userImage ? { userImage: cfg.userImage } : {}),
      logPath: cfg.logPath,
      mounts: cfg.rawMounts,
      namespaceOptions: cfg.namespaceOptions,
      stdinOnce: cfg.stdinOnce,
      createdAt: nowNs(),
    };
    const filesDir = this.pods.filesDir(sid);
    const taken = () =>
      new BerthError(
        Code.ALREADY_EXISTS,
        `container "${cfg.metadata.name}" (attempt ${cfg.metadata.attempt}) already exists in pod sandbox ${sid}`,
      );
    // Chosen here, as containerd's CRI chooses it: the container's cgroup is named after it.
    const id = chooseCriId();
    const req = containerRequest(cfg, {
      id,
      sandbox: {
        id: sid,
        meta: sb.meta,
        pid: sb.info.task.pid,
        filesDir,
        cgroupParent: sb.meta.cgroupParent,
        hostname: sb.meta.hostname || podHostname(filesDir),
        ...(targetPid ? { targetPid } : {}),
      },
      imageName: image.name,
      meta,
    });
    const reserved = req.name ?? '';
    if (this.creating.has(reserved)) throw taken();
    this.creating.add(reserved);
    try {
      await this.makeHostPaths(sid, reserved, cfg.mounts, taken);
      return await this.createRecord(id, req, image);
    } catch (err) {
      const e = toBerthError(err);
      if (e.code !== Code.ALREADY_EXISTS) throw e;
      throw taken();
    } finally {
      this.creating.delete(reserved);
    }
  }

  /**
   * The container's record under `id`, the gateway's choice (its task is made by StartContainer).
   * A create that failed and may still have made it (a lost reply, a timeout) is undone by that
   * id; not one the task-service refused (ALREADY_EXISTS, INVALID_ARGUMENT), which made nothing
   * and whose id may be another container's. A task-service that made it under an id of its own
   * (one before caller-chosen ids) is FAILED_PRECONDITION, its container removed.
   */
  private async createRecord(id: string, req: CreateContainerRequest, image: ImageRecord): Promise<string> {
    let made: string;
    try {
      // The record the gateway's image view gave: the task-service need not ask the image-service.
      // The rootfs is prepared after the reply, in the gap before the kubelet's StartContainer.
      made = (await this.d.tasks.createContainer({ ...req, imageRecord: image, prepareAfterReply: true })).id;
    } catch (err) {
      if (mayHaveMade(err)) await removeMade(this.d.tasks, id, false, this.warnUndo);
      throw err;
    }
    if (made === id) return made;
    // Its cgroup is named after the gateway's id: node agents would take it for another container.
    await removeMade(this.d.tasks, made, true, this.warnUndo);
    throw foreignIdError('container', made, id);
  }

  private readonly warnUndo = (err: unknown, id: string): void => {
    this.d.log.warn({ err, what: id }, 'cleanup after a failed CreateContainer failed');
  };

  /**
   * Makes the missing host paths of a create's bind mounts (the task-service refuses a missing
   * source), once it is known that the name is free (not created, nor being created by this
   * gateway: see `creating`): a refused duplicate makes nothing on the host, as containerd
   * reserves the name first. Only a request with a missing path pays the lookup (the pod's
   * containers, from the gateway's view).
   */
  private async makeHostPaths(
    sid: string,
    name: string,
    mounts: readonly { source: string }[],
    taken: () => BerthError,
  ): Promise<void> {
    if (mounts.every((m) => existsSync(m.source))) return;
    const pods = await this.d.tasks.listContainers({
      [CriLabel.kind]: CriKind.container,
      [CriLabel.sandboxId]: sid,
    });
    if (pods.some((i) => i.container.name === name)) throw taken();
    await makeMissingHostPaths(mounts);
  }

  /**
   * StartContainer: creates and starts its task (one task-service call when it has none yet); a
   * failed start leaves no task behind.
   */
  async start(id: string): Promise<void> {
    const info = await this.get(id);
    const cid = info.container.id;
    if (info.status !== 'created') {
      throw new BerthError(Code.FAILED_PRECONDITION, `container ${cid} is ${info.status}, not created`);
    }
    if (startFailureOf(info)) {
      throw new BerthError(Code.FAILED_PRECONDITION, `container ${cid} is in exited state: its start failed`);
    }
    // Its spec joins the pause process's namespaces by pid: a pod stopped since the create (its
    // pause gone, the pid free for another process) must not be joined (containerd refuses too).
    const sid = info.container.labels[CriLabel.sandboxId];
    if (sid) {
      const sb = await this.pods.get(sid).catch((err: unknown) => {
        const e = toBerthError(err);
        if (e.code !== Code.NOT_FOUND) throw e;
        throw new BerthError(
          Code.FAILED_PRECONDITION,
          `pod sandbox ${sid} of container ${cid} is gone: cannot start it`,
        );
      });
      if (sb.info.status !== 'running') {
        throw new BerthError(
          Code.FAILED_PRECONDITION,
          `pod sandbox ${sid} is not ready: cannot start container ${cid} in it`,
        );
      }
    }
    try {
      if (!info.task) {
        await this.d.tasks.createTask(cid, { start: true });
        return;
      }
      try {
        await this.d.tasks.start(cid);
      } catch (err) {
        await ignoreGone(this.d.tasks.deleteTask(cid)).catch(() => undefined);
        throw err;
      }
    } catch (err) {
      await this.markStartFailed(info, err);
      throw err;
    }
  }

  /**
   * Records a failed start in the container's meta label (stored by the task-service, so a new
   * gateway sees it too): the container is then exited with START_ERROR, as containerd's CRI marks
   * it, and cannot be started again. Not when the start may still be under way or was another's:
   * the task-service unreachable (the kubelet retries), or a task that already exists.
   */
  private async markStartFailed(info: ContainerInfo, err: unknown): Promise<void> {
    const e = toBerthError(err);
    // A start that may still be under way (its caller gave up or lost the answer) is not marked:
    // it could come up after, and a container does not leave EXITED for RUNNING.
    if (
      e.code === Code.UNAVAILABLE ||
      e.code === Code.ALREADY_EXISTS ||
      e.code === Code.DEADLINE_EXCEEDED ||
      e.code === Code.CANCELLED
    ) {
      return;
    }
    const c = info.container;
    const meta = metaOf<ContainerMeta>(c);
    const startFailure: StartFailure = { message: e.message, finishedAt: nowNs() };
    await this.d.tasks
      .updateContainer({ id: c.id, labels: { [CriLabel.meta]: JSON.stringify({ ...meta, startFailure }) } })
      // The start's own error is what the caller hears; the container then stays created.
      .catch(() => undefined);
  }

  /** StopContainer: the stop signal, SIGKILL after `timeout` seconds; a stopped container is success. */
  async stop(id: string, timeoutSeconds: number): Promise<void> {
    const info = await this.get(id);
    await stopTask(this.d.tasks, info.container.id, {
      timeoutMs: Math.max(0, timeoutSeconds) * 1000,
      signal: info.container.stopSignal,
    });
  }

  /**
   * RemoveContainer: kills and removes it; an absent container is success. The record goes in the
   * call; its stopped task, files and snapshot are freed by the task-service after (as containerd
   * leaves them to its exit handler and garbage collector).
   */
  async remove(id: string): Promise<void> {
    let info: ContainerInfo;
    try {
      info = await this.get(id);
    } catch (err) {
      if (toBerthError(err).code === Code.NOT_FOUND) return;
      throw err;
    }
    await ignoreGone(this.d.tasks.deleteContainer(info.container.id, true, true));
  }

  /** ContainerStatus. */
  async status(id: string) {
    const info = await this.get(id);
    return { status: toContainerStatus(info), info };
  }

  /** ListContainers: containers matching every filter (id prefix, state, pod, labels). */
  async list(filter: ContainerFilter | null | undefined) {
    const labels: Record<string, string> = { [CriLabel.kind]: CriKind.container };
    const all = await this.d.tasks.listContainers(labels);
    const selector = stringMap(filter?.label_selector, 'filter.label_selector');
    return all
      .filter((i) => {
        if (filter?.id && !i.container.id.startsWith(filter.id)) return false;
        const pod = i.container.labels[CriLabel.sandboxId] ?? '';
        if (filter?.pod_sandbox_id && !pod.startsWith(filter.pod_sandbox_id)) return false;
        if (filter?.state && containerState(i) !== filter.state.state) return false;
        const l = metaOf<ContainerMeta>(i.container).labels;
        return Object.entries(selector).every(([k, v]) => l[k] === v);
      })
      .map(toCriContainer);
  }

  /**
   * ExecSync: runs `cmd` in the running container and returns its output and exit code; after
   * `timeout` seconds (0: none) it is killed and the call fails DEADLINE_EXCEEDED.
   */
  async execSync(id: string, rawCmd: unknown, timeoutSeconds: number) {
    const cmd = stringList(rawCmd, 'cmd');
    if (cmd.length === 0) throw new BerthError(Code.INVALID_ARGUMENT, 'cmd is required');
    const info = await this.get(id);
    const cid = info.container.id;
    if (info.status !== 'running') {
      throw new BerthError(Code.FAILED_PRECONDITION, `container ${cid} is ${info.status}, not running`);
    }
    const execId = `sync-${randomBytes(8).toString('hex')}`;
    const proc = await this.d.tasks.exec({ id: cid, execId, args: cmd });
    try {
      await this.d.tasks.start(cid, execId);
      const timeoutMs = timeoutSeconds > 0 ? timeoutSeconds * 1000 : undefined;
      let exitCode: number;
      try {
        exitCode = (await this.d.tasks.wait(cid, { execId, ...(timeoutMs ? { timeoutMs } : {}) })).exitCode;
      } catch (err) {
        if (toBerthError(err).code !== Code.DEADLINE_EXCEEDED) throw err;
        await ignoreGone(this.d.tasks.kill({ id: cid, execId, signal: 'SIGKILL' }));
        await this.d.tasks.wait(cid, { execId, timeoutMs: EXEC_KILL_WAIT_MS }).catch(() => undefined);
        throw new BerthError(
          Code.DEADLINE_EXCEEDED,
          `command ${JSON.stringify(cmd)} in container ${cid} timed out after ${timeoutSeconds}s`,
        );
      }
      if (!proc.logPath) throw new BerthError(Code.INTERNAL, `exec ${execId} in container ${cid} has no log`);
      const out = await this.d.shim.readLog(proc.logPath, EXEC_SYNC_MAX_STREAM_BYTES);
      return { stdout: out.stdout, stderr: out.stderr, exit_code: exitCode };
    } finally {
      await ignoreGone(this.d.tasks.deleteTask(cid, execId)).catch(() => undefined);
    }
  }

  /** UpdateContainerResources: new limits in the spec and on a live task. */
  async updateResources(id: string, linux: unknown): Promise<void> {
    const info = await this.get(id);
    const parsed = parseResources(linux, 'linux', { update: true });
    const resources = nodeResources(parsed.resources, await this.nodeCgroups(), 'linux');
    const id2 = info.container.id;
    // A live task takes the limits now (the task-service also keeps them in the spec).
    if (info.status === 'running' || info.status === 'paused') await this.d.tasks.updateTask(id2, resources);
    else await this.d.tasks.updateContainer({ id: id2, resources });
  }

  private nodeCgroups(): Promise<CgroupSupport> {
    return (this.d.cgroups ?? hostCgroupSupport)();
  }

  /** ReopenContainerLog: the container's monitor reopens its log (the kubelet rotated it). */
  async reopenLog(id: string): Promise<void> {
    const info = await this.get(id);
    if (info.status !== 'running') {
      throw new BerthError(Code.FAILED_PRECONDITION, `container ${info.container.id} is not running`);
    }
    await this.d.shim.reopenLog(info.container.id);
  }
}

/**
 * Makes each bind mount's missing host path a directory (0755), as containerd's CRI does: a
 * hostPath volume with no type check names a directory the kubelet leaves to the runtime to make.
 * The gateway runs on the node whose paths these are.
 */
async function makeMissingHostPaths(mounts: readonly { source: string }[]): Promise<void> {
  for (const [i, m] of mounts.entries()) {
    if (existsSync(m.source)) continue;
    try {
      await mkdir(m.source, { recursive: true, mode: 0o755 });
    } catch (err) {
      throw new BerthError(
        Code.FAILED_PRECONDITION,
        `config.mounts[${i}].host_path "${m.source}" does not exist and could not be made a directory: ${(err as Error).message}`,
      );
    }
  }
}

/**
 * The host name a pod's pause container got, for a pod whose record has none (one made before the
 * gateway fixed it in the record): what its hostname file holds; '' if unreadable.
 */
function podHostname(filesDir: string): string {
  try {
    return readFileSync(join(filesDir, 'hostname'), 'utf8').trim();
  } catch {
    return '';
  }
}
