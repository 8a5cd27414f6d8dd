import { mkdir, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { BerthError, Code, type ShimBandwidth, type ShimCniDns, type ShimPodIdentity } from '@berth/api';
import type { HostLayout } from '@berth/kit';
import { defaultNetwork, listNetworks, type NetworkInfo } from './choice.js';
import { type AttachmentInfo, addChain, checkChain, delChain, type PortMapping, parseResult } from './cni.js';
import type { CniConfList, CniNetwork } from './cni-config.js';
import { findPlugin } from './cni-exec.js';
import { type DefaultNetworkOptions, ensureDefaultNetwork } from './default-config.js';
import { masquerades, removeMasquerade } from './masq.js';
import { createPodNetns, isNetnsMounted, removeNetns } from './netns.js';
import { podChain } from './pod-chain.js';
import { applyPodCidr, type PodCidrOutcome } from './pod-cidr.js';
import { checkPodId, networkPaths, type PodNetworkRecord, PodRecords } from './state.js';
import { berthMasqRules, removeSubnetRule, SubnetMasquerade } from './subnet-masq.js';

/** Where CNI lives on the host and how the default network looks (services.shim.cni* keys). */
export interface NetworkOptions {
  layout: Pick<HostLayout, 'stateRoot' | 'runRoot'>;
  /** CNI configuration directory; default /etc/cni/net.d. */
  confDir?: string;
  /** Where plugin binaries are searched, in order; default /usr/lib/cni, /opt/cni/bin. */
  pluginDirs?: string[];
  /** Shape of the conflist installed when confDir holds none. */
  defaults?: DefaultNetworkOptions;
  /** Install the default conflist when confDir is empty; default true. */
  installDefault?: boolean;
  /** Longest one plugin may run before it is killed; default 60 s. */
  pluginTimeoutMs?: number;
}

/** A pod's network as a caller uses it: the namespace to join and the addresses it has there. */
export interface PodNetwork extends AttachmentInfo {
  podId: string;
  netnsPath: string;
  network: string;
  confFile: string;
  portMappings: PortMapping[];
}

/** Options of one pod's setup. */
export interface SetupOptions {
  portMappings?: PortMapping[];
  /** A Kubernetes pod's identity, passed to every plugin as CNI_ARGS (ADD, CHECK and DEL). */
  pod?: ShimPodIdentity;
  /** The `bandwidth` capability, for plugins declaring it. */
  bandwidth?: ShimBandwidth;
  /** The `dns` capability, for plugins declaring it. */
  dns?: ShimCniDns;
  /**
   * A task is being made in the pod's namespace beside this setup (a create with startAttached):
   * an ADD that fails is undone by its DEL only, and the namespace stays, recorded unattached
   * (as prepare() leaves it), for the caller's teardown. Removing it would pull the path from
   * under a `runc create` about to join it, which then fails with ENOENT instead of the ADD's error.
   */
  keepNetns?: boolean;
}

/** What recovery did: pods whose half-made or stale attachment was deleted, and pods kept. */
export interface RecoveryReport {
  released: string[];
  kept: string[];
  /** Pods whose DEL failed (left recorded for the next attempt), with the reason. */
  failed: { podId: string; error: string }[];
}

/**
 * Host-local pod networking through the real CNI plugins: a pinned network namespace per pod,
 * attached by the network of the conf dir pods join (see choice.ts). Every step is recorded on
 * disk first, so a restarted shim knows each pod's namespace and addresses and can release what a
 * crash left.
 */
export class NetworkManager {
  readonly confDir: string;
  readonly pluginDirs: string[];
  readonly paths: ReturnType<typeof networkPaths>;
  private readonly records: PodRecords;
  private readonly timeoutMs: number;
  /** One operation per pod at a time: setup and teardown of the same pod must not interleave. */
  private readonly busy = new Map<string, Promise<unknown>>();
  /** Setups under way, each settling true once its pod's namespace is pinned (false if it never was). */
  private readonly pinning = new Map<string, Promise<boolean>>();
  /** The one masquerade rule per subnet of berth's default network, ensured once per process. */
  private readonly masq = new SubnetMasquerade();

  constructor(private readonly opts: NetworkOptions) {
    this.confDir = opts.confDir ?? '/etc/cni/net.d';
    this.pluginDirs = opts.pluginDirs ?? ['/usr/lib/cni', '/opt/cni/bin'];
    this.paths = networkPaths(opts.layout);
    this.records = new PodRecords(this.paths.stateDir);
    this.timeoutMs = opts.pluginTimeoutMs ?? 60_000;
  }

  /** The pinned namespace path of a pod (whether or not it exists yet). */
  netnsPath(podId: string): string {
    checkPodId(podId);
    return join(this.paths.netnsDir, podId);
  }

  /** The network pods join, installing the default conflist first when the conf dir has none. */
  async network(): Promise<CniNetwork> {
    if (this.opts.installDefault !== false) await ensureDefaultNetwork(this.confDir, this.opts.defaults);
    const net = await defaultNetwork(this.confDir);
    if (!net) {
      throw new BerthError(Code.FAILED_PRECONDITION, `no CNI network configuration in "${this.confDir}"`);
    }
    return net;
  }

  /** Lists the CNI networks of the conf dir (`berth network ls`), the default one installed if none. */
  async listNetworks(): Promise<NetworkInfo[]> {
    if (this.opts.installDefault !== false) await ensureDefaultNetwork(this.confDir, this.opts.defaults);
    return listNetworks(this.confDir);
  }

  /**
   * Takes the kubelet's pod CIDR for the default network (see applyPodCidr): pods recorded in any
   * phase count as attached, so a setup under way keeps the range it started with.
   */
  async setPodCidr(cidrs: string[]): Promise<PodCidrOutcome> {
    if (this.opts.installDefault === false) {
      return {
        applied: false,
        reason: 'the shim does not install a default network (cniInstallDefault false)',
      };
    }
    const attached = (await this.records.ids()).length;
    const before = await defaultNetwork(this.confDir).catch(() => undefined);
    const outcome = await applyPodCidr(this.confDir, this.opts.defaults ?? {}, cidrs, attached);
    if (outcome.applied) {
      // A moved network leaves its old subnet's rule: nothing is attached there any more.
      const after = await this.network();
      const kept = new Set(berthMasqRules(after.conf).map((r) => `${r.iptables} ${r.subnet}`));
      for (const rule of before ? berthMasqRules(before.conf) : []) {
        if (!kept.has(`${rule.iptables} ${rule.subnet}`)) await removeSubnetRule(rule);
      }
      this.masq.forget();
    }
    return outcome;
  }

  /**
   * Gives a pod its pinned network namespace without attaching it, so the pod's containers can be
   * made in it while setup() runs the CNI chain (as containerd makes the namespace first). The
   * network is chosen and its plugins found here, before anything exists; the record (phase
   * `netns`) is on disk before the namespace is made. Idempotent: a pod with a namespace (in any
   * phase) gets its path back. On failure nothing is left.
   */
  async prepare(podId: string): Promise<string> {
    checkPodId(podId);
    return this.serial(podId, async () => {
      const existing = await this.records.get(podId);
      if (existing && existing.phase !== 'adding' && (await isNetnsMounted(existing.netnsPath)))
        return existing.netnsPath;
      if (existing) await this.release(existing);
      const rec = await this.makeNetns(podId, { portMappings: [] });
      // Kept on disk: the setup that follows, maybe by a restarted shim, skips the loopback ADD.
      if (rec.loopbackUp) await this.records.put(rec);
      return rec.netnsPath;
    });
  }

  /**
   * Gives a pod its network namespace (unless prepare() made it) and attaches it (loopback up,
   * then the network's chain with its port mappings). Idempotent: a pod already set up gets its
   * recorded network back, with the port mappings it was set up with (tear it down to change
   * them). On any failure everything made so far is deleted again before the error is thrown
   * (but the namespace, with `keepNetns`).
   */
  async setup(podId: string, options: SetupOptions = {}): Promise<PodNetwork> {
    checkPodId(podId);
    const how: PodAttach = {
      portMappings: checkPortMappings(options.portMappings ?? []),
      ...(options.pod ? { pod: { ...options.pod } } : {}),
      ...(options.bandwidth ? { bandwidth: { ...options.bandwidth } } : {}),
      ...(options.dns ? { dns: { ...options.dns } } : {}),
    };
    // Announced before the turn in serial(): a task create naming this pod waits for the namespace
    // only (ensureNetns), not for the whole chain's ADD queued with it.
    let pinned: (ok: boolean) => void = () => undefined;
    const pin = new Promise<boolean>((resolve) => {
      pinned = resolve;
    });
    this.pinning.set(podId, pin);
    try {
      return await this.serial(podId, () => this.setupSerial(podId, how, pinned, options.keepNetns === true));
    } finally {
      pinned(false);
      if (this.pinning.get(podId) === pin) this.pinning.delete(podId);
    }
  }

  /**
   * Gives a task create the pod's pinned namespace: the one a setup() under way pins (waited for,
   * not its ADD), one already there, or else one pinned now as prepare() does (the record first).
   * A pod whose setup failed before its namespace existed gets one pinned here; the caller's own
   * failure then tears it down as it tears the pod's network down.
   */
  async ensureNetns(podId: string): Promise<string> {
    checkPodId(podId);
    const path = this.netnsPath(podId);
    const pin = this.pinning.get(podId);
    if (pin && (await pin)) return path;
    const rec = await this.records.get(podId);
    if (rec && rec.phase !== 'adding' && (await isNetnsMounted(rec.netnsPath))) return rec.netnsPath;
    return this.prepare(podId);
  }

  private async setupSerial(
    podId: string,
    how: PodAttach,
    pinned: (ok: boolean) => void,
    keepNetns: boolean,
  ): Promise<PodNetwork> {
    const existing = await this.records.get(podId);
    const mounted = existing ? await isNetnsMounted(existing.netnsPath) : false;
    if (existing?.phase === 'ready' && mounted) {
      pinned(true);
      return view(existing);
    }
    let rec: PodNetworkRecord;
    if (existing?.phase === 'netns' && mounted) rec = { ...existing, ...how, phase: 'adding' };
    else {
      if (existing) await this.release(existing);
      rec = { ...(await this.makeNetns(podId, how)), phase: 'adding' };
    }
    pinned(true);
    // What a failed ADD leaves with keepNetns: the namespace, unattached, with the network's own chain.
    const unattached: PodNetworkRecord = { ...rec, phase: 'netns' };
    // The chain this pod's ADD runs is recorded before it runs: DEL and CHECK run the same one.
    rec = { ...rec, network: { ...rec.network, conf: podChain(rec.network.conf, how.portMappings) } };
    try {
      // From here a crash leaves phase adding: recover() runs the chain's DEL.
      await this.records.put(rec);
      // berth's default network masquerades with one rule per subnet, there before any pod's ADD.
      await this.masq.ensure(rec.network.conf);
      // loopback only brings up `lo` in the namespace (done already when the addon made it), the
      // chain makes eth0: independent, so they run at once (as containerd's go-cni attaches its
      // networks); both settle before a failure is undone, so the DEL below never races an ADD.
      const [lo, chain] = await Promise.allSettled([
        rec.loopbackUp
          ? undefined
          : addChain(loopbackList(rec.network.conf.cniVersion), this.attachment(rec), this.chainOpts()),
        addChain(rec.network.conf, this.attachment(rec), this.chainOpts()),
      ]);
      if (lo.status === 'rejected') throw lo.reason;
      if (chain.status === 'rejected') throw chain.reason;
      const result = chain.value;
      const ready: PodNetworkRecord = { ...rec, phase: 'ready', ...(result ? { result } : {}) };
      await this.records.put(ready);
      return view(ready);
    } catch (err) {
      const undo = keepNetns ? this.detach(rec).then(() => this.records.put(unattached)) : this.release(rec);
      await undo.catch((cleanup: Error) => {
        // The record and namespace stay (phase adding): teardown or recover() retries the DEL.
        (err as Error).message +=
          `; its cleanup (CNI DEL) failed too, so pod "${podId}" stays recorded for teardown or recovery: ${cleanup.message}`;
      });
      throw err;
    }
  }

  /**
   * Records a pod (phase netns) and pins its namespace; on failure removes both. The record it
   * returns says whether lo is up already (put by the caller: setup writes its next phase anyway).
   */
  private async makeNetns(podId: string, how: PodAttach): Promise<PodNetworkRecord> {
    const net = await this.network();
    // A missing plugin is found before anything exists, so there is nothing to undo.
    for (const plugin of [{ type: 'loopback' }, ...net.conf.plugins])
      await findPlugin(plugin.type, this.pluginDirs);
    const rec: PodNetworkRecord = {
      version: 1,
      podId,
      phase: 'netns',
      netnsPath: this.netnsPath(podId),
      ifname: 'eth0',
      network: { file: net.file, conf: net.conf },
      ...how,
      createdAt: new Date().toISOString(),
    };
    // The intent is on disk before anything exists, so a crash from here on is found by recover().
    await this.records.put(rec);
    try {
      await mkdir(this.paths.netnsDir, { recursive: true, mode: 0o755 });
      const { loopbackUp } = await createPodNetns(rec.netnsPath);
      return loopbackUp ? { ...rec, loopbackUp } : rec;
    } catch (err) {
      await this.release(rec).catch(() => undefined);
      throw err;
    }
  }

  /**
   * Detaches a pod and removes its namespace and record. Idempotent: an unknown pod is a no-op,
   * and a pod whose namespace is already gone still has its addresses released (CNI DEL with no
   * namespace reaches IPAM). If a plugin's DEL fails the record and namespace stay (so a retry or
   * recover() can finish) and the error is thrown; with `force` they are removed anyway and the
   * DEL errors are returned, for a pod whose DEL can never succeed (e.g. its config was invalid).
   */
  async teardown(podId: string, options: { force?: boolean } = {}): Promise<{ errors: string[] }> {
    checkPodId(podId);
    return this.serial(podId, async () => {
      const forcedPast: string[] = [];
      // A record that cannot be read leaves nothing to DEL with: only force gets past it.
      const rec = await this.records.get(podId).catch(async (err: Error) => {
        if (!options.force) throw err;
        await this.records.delete(podId);
        forcedPast.push(err.message);
        return undefined;
      });
      if (!rec) {
        await removeNetns(this.netnsPath(podId));
        return { errors: forcedPast };
      }
      try {
        await this.release(rec);
        return { errors: [] };
      } catch (err) {
        if (!options.force) throw err;
        await removeNetns(rec.netnsPath);
        await this.records.delete(podId);
        return { errors: [(err as Error).message] };
      }
    });
  }

  /** The recorded network of a pod that is set up, or undefined. */
  async status(podId: string): Promise<PodNetwork | undefined> {
    checkPodId(podId);
    const rec = await this.records.get(podId);
    return rec?.phase === 'ready' ? view(rec) : undefined;
  }

  /**
   * Every pod set up on this node, and every pod with a namespace not attached yet (no addresses):
   * a runtime that died between prepare() and setup() finds those to tear down too.
   */
  async list(): Promise<PodNetwork[]> {
    const out: PodNetwork[] = [];
    for (const id of await this.records.ids()) {
      const rec = await this.records.get(id).catch(() => undefined);
      if (rec?.phase === 'ready' || rec?.phase === 'netns') out.push(view(rec));
    }
    return out;
  }

  /** Runs CNI CHECK for a pod: throws what the first plugin finds wrong (e.g. its veth gone). */
  async check(podId: string): Promise<void> {
    checkPodId(podId);
    return this.serial(podId, async () => {
      const rec = await this.records.get(podId);
      if (rec?.phase !== 'ready' || !rec.result)
        throw new BerthError(Code.NOT_FOUND, `pod "${podId}" has no network set up`);
      await checkChain(rec.network.conf, this.attachment(rec), this.chainOpts(), rec.result);
    });
  }

  /**
   * Cleans what a crash or reboot left, once at start: every pod recorded mid-ADD and every pod
   * whose namespace is gone (a reboot) is deleted (its leases released); namespace files without a
   * record are removed. Pods that are whole, or have a namespace awaiting its ADD, are kept.
   */
  async recover(): Promise<RecoveryReport> {
    const report: RecoveryReport = { released: [], kept: [], failed: [] };
    const ids = await this.records.ids();
    for (const podId of ids) {
      // One bad pod (a corrupt record, a failing DEL) is reported, never stops the agent's start.
      await this.serial(podId, async () => {
        const rec = await this.records.get(podId);
        if (!rec) return;
        // A namespace made ahead of its ADD is kept too: its runtime may be making the pod in it.
        if (rec.phase !== 'adding' && (await isNetnsMounted(rec.netnsPath))) {
          report.kept.push(podId);
          return;
        }
        await this.release(rec);
        report.released.push(podId);
      }).catch((err: Error) => report.failed.push({ podId, error: err.message }));
    }
    const files = await readdir(this.paths.netnsDir).catch(() => [] as string[]);
    for (const name of files) {
      if (!ids.includes(name)) await removeNetns(join(this.paths.netnsDir, name));
    }
    return report;
  }

  /**
   * DEL of the recorded chain (none for a pod no plugin ran for), then the namespace, then the
   * record (loopback needs no DEL: it dies with the namespace).
   */
  private async release(rec: PodNetworkRecord): Promise<void> {
    if (rec.phase !== 'netns') await this.detach(rec);
    await removeNetns(rec.netnsPath);
    await this.records.delete(rec.podId);
  }

  /** DEL of the recorded chain: the pod's addresses and interfaces go, its namespace stays. */
  private async detach(rec: PodNetworkRecord): Promise<void> {
    const mounted = await isNetnsMounted(rec.netnsPath);
    const att = { ...this.attachment(rec), netns: mounted ? rec.netnsPath : '' };
    await delChain(rec.network.conf, att, this.chainOpts(), rec.result);
    // The bridge plugin finds a pod's masquerade rules through its interface: with the namespace
    // or the interface gone it leaves them, and they are removed by name here.
    if (masquerades(rec.network.conf)) await removeMasquerade(rec.network.conf.name, rec.podId);
  }

  private attachment(rec: PodNetworkRecord) {
    return {
      containerId: rec.podId,
      netns: rec.netnsPath,
      ifname: rec.ifname,
      portMappings: rec.portMappings,
      ...(rec.pod ? { pod: rec.pod } : {}),
      ...(rec.bandwidth ? { bandwidth: rec.bandwidth } : {}),
      ...(rec.dns ? { dns: rec.dns } : {}),
    };
  }

  private chainOpts() {
    return { pluginDirs: this.pluginDirs, timeoutMs: this.timeoutMs };
  }

  private async serial<T>(podId: string, work: () => Promise<T>): Promise<T> {
    const before = this.busy.get(podId) ?? Promise.resolve();
    const next = before.catch(() => undefined).then(work);
    this.busy.set(podId, next);
    try {
      return await next;
    } finally {
      if (this.busy.get(podId) === next) this.busy.delete(podId);
    }
  }
}

/** What one pod's chain is run with, recorded with it: port mappings, pod identity, capabilities. */
type PodAttach = Pick<PodNetworkRecord, 'portMappings' | 'pod' | 'bandwidth' | 'dns'>;

/** The loopback plugin as its own one-plugin list: it brings `lo` up inside the namespace. */
function loopbackList(cniVersion: string): CniConfList {
  return { cniVersion, name: 'cni-loopback', plugins: [{ type: 'loopback' }] };
}

function view(rec: PodNetworkRecord): PodNetwork {
  return {
    podId: rec.podId,
    netnsPath: rec.netnsPath,
    network: rec.network.conf.name,
    confFile: rec.network.file,
    portMappings: rec.portMappings,
    ...parseResult(rec.result, rec.ifname),
  };
}

/** Validates port mappings: INVALID_ARGUMENT naming the field of the first bad one. */
export function checkPortMappings(list: PortMapping[]): PortMapping[] {
  for (const [i, p] of list.entries()) {
    for (const key of ['hostPort', 'containerPort'] as const) {
      const v = p[key];
      if (!Number.isInteger(v) || v < 1 || v > 65535) {
        throw new BerthError(Code.INVALID_ARGUMENT, `invalid portMappings[${i}].${key} ${v}: want 1-65535`);
      }
    }
    if (!['tcp', 'udp', 'sctp'].includes(p.protocol)) {
      throw new BerthError(
        Code.INVALID_ARGUMENT,
        `invalid portMappings[${i}].protocol "${p.protocol}": want tcp, udp or sctp`,
      );
    }
  }
  return list.map((p) => ({ ...p }));
}
