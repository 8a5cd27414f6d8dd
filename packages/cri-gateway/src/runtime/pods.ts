import { randomBytes } from 'node:crypto';
import { hostname as osHostname } from 'node:os';
import { join } from 'node:path';
import {
  BerthError,
  Code,
  type ContainerInfo,
  Hostname,
  type ImageRecord,
  TaskTopic,
  toBerthError,
} from '@berth/api';
import type { Logger } from '@berth/kit';
import { CRI_NAMESPACE } from '../images/ports.js';
import { chooseCriId, foreignIdError, mayHaveMade, removeMade } from './chosen-id.js';
import { CRI_NET_PREFIX } from './cni-network.js';
import { podState, toContainerStatus, toPodSandbox, toPodSandboxStatus } from './cri-status.js';
import { CriKind, CriLabel, kindOf, metaOf, NsMode, nowNs, type SandboxMeta } from './meta.js';
import type { SandboxImage } from './pause-image.js';
import type {
  NetworkReadiness,
  PodCidrOutcome,
  PodNetwork,
  PodNetworkResult,
  PodNetworkSetup,
  TaskPort,
} from './ports.js';
import { type PodConfig, parsePodConfig, sandboxRequest } from './sandbox-spec.js';
import { ignoreGone, stopTask } from './stop.js';
import { stringMap } from './validate.js';

/** What the pod and container runtimes use: berth's services, the pod network, node paths. */
export interface RuntimeDeps {
  tasks: TaskPort;
  network: PodNetwork;
  sandboxImage: SandboxImage;
  /** The node's containers directory (layout.containers): the shim writes /etc files there. */
  containersDir: string;
  log: Logger;
  /**
   * berth's events, when the caller follows them: RunPodSandbox records the pod's addresses as
   * soon as the pause's task is recorded (`tasks.create`) instead of after its start too.
   */
  events?: EventFeed;
}

/** Subscribes to berth's events (the gateway's one subscription); returns how to unsubscribe. */
export type EventFeed = (
  onEvent: (e: { topic: string; namespace: string; event: unknown }) => void,
) => () => void;

/** CRI ListPodSandbox filter, as on the wire. */
export interface PodFilter {
  id?: string;
  state?: { state: string } | null;
  label_selector?: Record<string, string>;
}

/** A pod sandbox as the task-service holds it: its pause container and the CRI facts. */
export interface Sandbox {
  info: ContainerInfo;
  meta: SandboxMeta;
}

/**
 * CRI pod sandboxes as pause containers of the task-service (namespace k8s.io): run, stop,
 * remove, status, list. The task-service owns every record; this class keeps no state.
 */
export class PodRuntime {
  /** Networks set up by a RunPodSandbox still in progress: no pod names them yet. */
  private readonly settingUp = new Set<string>();

  /** Pods whose RunPodSandbox is still under way: listed only once it answered, as containerd's. */
  private readonly starting = new Set<string>();

  /** The node's pod CIDRs as the kubelet last sent them (UpdateRuntimeConfig); kept for status. */
  private cidrs: string[] = [];

  constructor(private readonly d: RuntimeDeps) {}

  /**
   * Takes the kubelet's pod CIDRs: kept for status and given to the node's default pod network
   * (undefined when they did not change). A refusal keeps the old ones, so the kubelet's retry
   * tries again.
   */
  async setPodCidrs(cidrs: string[]): Promise<PodCidrOutcome | undefined> {
    if (cidrs.join(',') === this.cidrs.join(',')) return undefined;
    const outcome = cidrs.length > 0 ? await this.d.network.usePodCidrs(cidrs) : undefined;
    this.cidrs = [...cidrs];
    return outcome ?? { applied: false, reason: 'no pod CIDR' };
  }

  /** The pod CIDRs the kubelet sent last ([] before it sent any). */
  podCidrs(): string[] {
    return [...this.cidrs];
  }

  /**
   * Tears down the pod networks no pod owns: left by a gateway that died between setting one up
   * and creating its pause container, or between removing a pod and tearing its network down.
   * First removes the pods whose RunPodSandbox failed and could not be undone (a service or NATS
   * was down for the undo, or a gateway died mid-way): a pod with a network key and no addresses
   * recorded that no RunPodSandbox of this gateway is setting up; its network then goes with the
   * unowned ones. Returns the keys it freed.
   */
  async collectNetworks(): Promise<string[]> {
    const keys = await this.d.network.list();
    // A pod being set up now is skipped even when its RunPodSandbox ends (and drops it from
    // settingUp) while the containers are listed: it started before the list of networks, so it is
    // in this copy; one that ended before the list of containers is owned in it, addresses and all.
    const busy = new Set(this.settingUp);
    const owned = new Set<string>();
    for (const i of await this.d.tasks.listContainers({ [CriLabel.kind]: CriKind.sandbox })) {
      const m = metaOf<SandboxMeta>(i.container);
      const k = m.netKey;
      if (!k) continue;
      if (m.ips === undefined && !busy.has(k) && !this.settingUp.has(k)) {
        // Never answered OK (the addresses are recorded before it answers): finish its undo. A
        // removal that fails keeps the pod and its network for the next pass.
        const gone = await ignoreGone(this.d.tasks.deleteContainer(i.container.id, true)).then(
          () => true,
          (err: unknown) => {
            this.warn(err, i.container.id);
            return false;
          },
        );
        if (gone) {
          this.d.log.info({ id: i.container.id, netKey: k }, 'removed a pod whose RunPodSandbox failed');
          continue;
        }
      }
      owned.add(k);
    }
    const freed: string[] = [];
    for (const k of keys) {
      if (owned.has(k) || busy.has(k) || this.settingUp.has(k)) continue;
      await this.d.network.teardown(k);
      freed.push(k);
    }
    return freed;
  }

  /** Whether pods can get a network on this node (CRI Status NetworkReady). */
  networkReadiness(): Promise<NetworkReadiness> {
    return this.d.network.readiness();
  }

  /** The pod with this id (or unique prefix); NOT_FOUND when absent or not a pod. */
  async get(id: string): Promise<Sandbox> {
    const info = await this.d.tasks.getContainer(id).catch((err: unknown) => {
      throw notFoundAs(err, `pod sandbox "${id}" not found`);
    });
    if (kindOf(info.container) !== CriKind.sandbox) {
      throw new BerthError(Code.NOT_FOUND, `pod sandbox "${id}" not found`);
    }
    return { info, meta: metaOf<SandboxMeta>(info.container) };
  }

  /** RunPodSandbox: network, pause container, its task; on failure nothing is left behind. */
  async run(rawConfig: unknown, runtimeHandler: string): Promise<string> {
    if (runtimeHandler !== '' && runtimeHandler !== 'runc') {
      throw new BerthError(
        Code.INVALID_ARGUMENT,
        `runtime_handler "${runtimeHandler}" is unknown: berth has one runtime (runc), use ""`,
      );
    }
    const pod = parsePodConfig(rawConfig);
    const image = await this.d.sandboxImage.ensure();
    const host = pod.namespaceOptions.network === NsMode.NODE;
    const netKey = host ? undefined : `${CRI_NET_PREFIX}${randomBytes(8).toString('hex')}`;
    if (netKey) this.settingUp.add(netKey);
    try {
      return await this.runIn(pod, runtimeHandler, image, netKey);
    } finally {
      if (netKey) this.settingUp.delete(netKey);
    }
  }

  private async runIn(
    pod: PodConfig,
    runtimeHandler: string,
    image: ImageRecord,
    netKey: string | undefined,
  ): Promise<string> {
    // The namespace has to exist before the pause's runc create joins it by path: the shim pins it
    // at whichever comes first, CNI ADD (network-setup) or that task create (netnsPod), so neither
    // waits for a call of its own. ADD runs while the container and its task are made: the
    // sandbox's id (the plugins' K8S_POD_INFRA_CONTAINER_ID, as containerd passes) is chosen here,
    // as containerd's CRI chooses it, so ADD need not wait for the record.
    const netnsPath = netKey ? this.d.network.netnsPath(netKey) : undefined;
    const meta: SandboxMeta = {
      metadata: pod.metadata,
      labels: pod.labels,
      annotations: pod.annotations,
      // Containers join the pod's UTS namespace and must set the same name: fix it here.
      hostname: pod.hostname || podHostnameOf(netKey),
      logDirectory: pod.logDirectory,
      runtimeHandler,
      cgroupParent: pod.cgroupParent,
      namespaceOptions: pod.namespaceOptions,
      ...(netKey && netnsPath ? { netKey, netnsPath } : {}),
      createdAt: nowNs(),
      sharedShm: true,
    };
    let id: string | undefined;
    let attach: Promise<PodNetworkResult> | undefined;
    // The task-service holds the pause's lock until its task is recorded, then starts it in the
    // same call: its `tasks.create` event says the lock is free, so the addresses are recorded
    // while the start runs. Events are at-most-once: the call's own reply is the fallback.
    let taskRecorded: () => void = () => undefined;
    const recorded = new Promise<void>((resolve) => {
      taskRecorded = resolve;
    });
    const unsubscribe = this.d.events?.((e) => {
      const ev = e.event as { id?: unknown } | undefined;
      if (e.topic === TaskTopic.taskCreate && e.namespace === CRI_NAMESPACE && id && ev?.id === id)
        taskRecorded();
    });
    const sandboxId = chooseCriId();
    // Whether the pause's record may exist though its create failed (see mayHaveMade).
    let maybeMade = true;
    try {
      const created = this.createPause(pod, image, meta, sandboxId, netnsPath).then((made) => {
        id = made;
        this.starting.add(made);
        // A task-service before caller-chosen ids picks its own: the plugins were told another,
        // and the pause's cgroup is named after the gateway's.
        if (made !== sandboxId) throw foreignIdError('pod sandbox', made, sandboxId);
        return made;
      });
      created.catch((e: unknown) => {
        if (id === undefined && !mayHaveMade(e)) maybeMade = false;
      });
      attach = netKey ? this.d.network.setup(netKey, networkSetup(pod, sandboxId)) : undefined;
      // The pause is started in the same call: it only sleeps, so it may run before CNI ADD is
      // done (nothing else runs in the pod before RunPodSandbox answers).
      const made = created.then(async (pause) => {
        await this.d.tasks.createTask(pause, { start: true, ...(netKey ? { netnsPod: netKey } : {}) });
        return pause;
      });
      // The addresses are known only once ADD is done: the record made with the container gets them.
      const addressed = attach
        ? Promise.all([attach, created]).then(async ([net, pause]) => {
            const go = await Promise.race([
              recorded.then(() => true),
              made.then(
                () => true,
                () => false,
              ),
            ]);
            if (go && net.ips) {
              await this.d.tasks.updateContainer({
                id: pause,
                labels: { [CriLabel.meta]: JSON.stringify({ ...meta, ips: net.ips }) },
              });
            }
          })
        : undefined;
      // All settle before anything is undone: a failed side is never left behind by the others.
      const [net, task, addr] = await Promise.allSettled([attach, made, addressed]);
      if (task.status === 'rejected') throw task.reason;
      if (net.status === 'rejected') throw net.reason;
      if (addr.status === 'rejected') throw addr.reason;
      return task.value;
    } catch (err) {
      // The record a create left whose reply never came is removed by the id chosen for it.
      const made = id ?? (maybeMade ? sandboxId : undefined);
      if (made) await removeMade(this.d.tasks, made, id !== undefined, (e) => this.warn(e, made));
      if (netKey) {
        await attach?.catch(() => undefined);
        await this.d.network.teardown(netKey).catch((e: unknown) => this.warn(e, netKey));
      }
      throw err;
    } finally {
      unsubscribe?.();
      if (id) this.starting.delete(id);
    }
  }

  /** The pause container's record under `id` (its task is made next); ALREADY_EXISTS names the pod. */
  private async createPause(
    pod: PodConfig,
    image: ImageRecord,
    meta: SandboxMeta,
    id: string,
    netnsPath: string | undefined,
  ): Promise<string> {
    try {
      const req = sandboxRequest(pod, { id, image: image.name, meta, ...(netnsPath ? { netnsPath } : {}) });
      // The record ensure() read: the task-service need not ask the image-service again. Its
      // rootfs is prepared after the reply, beside the pause task's start that follows.
      return (await this.d.tasks.createContainer({ ...req, imageRecord: image, prepareAfterReply: true })).id;
    } catch (err) {
      const e = toBerthError(err);
      if (e.code === Code.ALREADY_EXISTS) {
        const m = pod.metadata;
        throw new BerthError(
          Code.ALREADY_EXISTS,
          `pod sandbox ${m.namespace}/${m.name} (uid ${m.uid}, attempt ${m.attempt}) already exists`,
        );
      }
      throw e;
    }
  }

  /**
   * StopPodSandbox: kills every container of the pod and its pause process, and frees its network
   * at the same time (the namespace lives on in its bind mount until then, as the pause's does).
   */
  async stop(id: string): Promise<void> {
    const sb = await this.get(id);
    const sid = sb.info.container.id;
    const kill = async () => {
      const containers = await this.containersOf(sid);
      await Promise.all(
        containers.map((c) => stopTask(this.d.tasks, c.container.id, { timeoutMs: 0, signal: 'SIGKILL' })),
      );
      await stopTask(this.d.tasks, sid, { timeoutMs: 0, signal: 'SIGKILL' });
    };
    const netKey = sb.meta.netKey;
    const steps = await Promise.allSettled([kill(), netKey ? this.d.network.teardown(netKey) : undefined]);
    for (const r of steps) if (r.status === 'rejected') throw r.reason;
  }

  /** RemovePodSandbox: removes the pod's containers and the pod; an absent pod is success. */
  async remove(id: string): Promise<void> {
    let sb: Sandbox;
    try {
      sb = await this.get(id);
    } catch (err) {
      if (toBerthError(err).code === Code.NOT_FOUND) return;
      throw err;
    }
    const sid = sb.info.container.id;
    // The records go in the call, the node resources after (see ContainerRuntime.remove); the
    // containers, the pause container and the network (already down after StopPodSandbox) are
    // independent, so all go at once.
    const containers = await this.containersOf(sid);
    await Promise.all([
      ...containers.map((c) => ignoreGone(this.d.tasks.deleteContainer(c.container.id, true, true))),
      ignoreGone(this.d.tasks.deleteContainer(sid, true, true)),
      sb.meta.netKey ? this.d.network.teardown(sb.meta.netKey) : undefined,
    ]);
  }

  /** PodSandboxStatus: the CRI status of the pod, and its containers' (for the evented PLEG). */
  async status(id: string) {
    const sb = await this.get(id);
    const containers = await this.containersOf(sb.info.container.id);
    return {
      status: toPodSandboxStatus(sb.info),
      info: sb.info,
      containers: containers.map(toContainerStatus),
    };
  }

  /** ListPodSandbox: the pods matching every filter (id prefix, state, labels). */
  async list(filter: PodFilter | null | undefined) {
    const all = await this.d.tasks.listContainers({ [CriLabel.kind]: CriKind.sandbox });
    const selector = stringMap(filter?.label_selector, 'filter.label_selector');
    return all
      .filter((i) => {
        if (this.starting.has(i.container.id)) return false;
        if (filter?.id && !i.container.id.startsWith(filter.id)) return false;
        if (filter?.state && podState(i) !== filter.state.state) return false;
        const labels = metaOf<SandboxMeta>(i.container).labels;
        return Object.entries(selector).every(([k, v]) => labels[k] === v);
      })
      .map(toPodSandbox);
  }

  /** The application containers of a pod. */
  containersOf(sandboxId: string): Promise<ContainerInfo[]> {
    return this.d.tasks.listContainers({
      [CriLabel.kind]: CriKind.container,
      [CriLabel.sandboxId]: sandboxId,
    });
  }

  /** Directory of the pause container's hosts, resolv.conf and hostname on this node. */
  filesDir(sandboxId: string): string {
    return join(this.d.containersDir, CRI_NAMESPACE, sandboxId);
  }

  private warn(err: unknown, what: string): void {
    this.d.log.warn({ err, what }, 'cleanup after a failed RunPodSandbox failed');
  }
}

/** A NOT_FOUND from the task-service, renamed to the CRI object; other errors unchanged. */
export function notFoundAs(err: unknown, message: string): BerthError {
  const e = toBerthError(err);
  return e.code === Code.NOT_FOUND ? new BerthError(Code.NOT_FOUND, message, { cause: e }) : e;
}

/**
 * The host name of a pod that names none: the node's, as containerd gives it. In a network of the
 * pod's own, where it becomes the name of the pod's UTS namespace and must be a valid host name
 * (RFC 1123), a node name that is not gives way to a generated one.
 */
function podHostnameOf(netKey: string | undefined): string {
  const node = osHostname();
  if (!netKey || Hostname.safeParse(node).success) return node;
  return `pod-${netKey.slice(CRI_NET_PREFIX.length)}`;
}

/** What a pod's CNI ADD is run with: its ports, who it is (with its sandbox's id), bandwidth and DNS. */
function networkSetup(pod: PodConfig, sandboxId: string): PodNetworkSetup {
  const { namespace, name, uid } = pod.metadata;
  return {
    portMappings: pod.portMappings,
    pod: { namespace, name, uid, sandboxId },
    ...(pod.bandwidth ? { bandwidth: pod.bandwidth } : {}),
    ...(pod.dns ? { dns: pod.dns } : {}),
  };
}
