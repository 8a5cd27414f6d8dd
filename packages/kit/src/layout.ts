import { join } from 'node:path';

/**
 * Where berth keeps everything on a host; the one place paths are decided (docs/layout.md mirrors it).
 * All persistent state lives under stateRoot, runtime-only files (sockets, pid files) under runRoot.
 */
export function hostLayout(roots: { stateRoot: string; runRoot: string }) {
  const s = roots.stateRoot;
  const r = roots.runRoot;
  return {
    stateRoot: s,
    runRoot: r,
    content: {
      /** Committed blobs: blobs/sha256/<hex>, immutable once renamed in. */
      blobs: join(s, 'content', 'blobs', 'sha256'),
      /** In-progress downloads: ingest/<ref>/{data,meta}; committed by rename into blobs. */
      ingest: join(s, 'content', 'ingest'),
    },
    /** Snapshots: snapshots/<id>/{fs,work}; new ones built under snapshots/new-<rand> and renamed. */
    snapshots: join(s, 'snapshots'),
    /** Bundles: tasks/<ns>/<id>/{config.json,rootfs,...}. */
    tasks: join(s, 'tasks'),
    /** runc's own state (--root), kept under the state root. */
    runc: join(s, 'runc'),
    /**
     * Per-container files the shim of the container's node writes and bind-mounts (hosts,
     * resolv.conf, hostname) and the container's CRI log kept across its runs: containers/<ns>/<id>/.
     */
    containers: join(s, 'containers'),
    /**
     * AppArmor profiles the shim writes and loads into the kernel with apparmor_parser:
     * apparmor/berth-default, berth's default profile (rewritten at each load).
     */
    apparmor: join(s, 'apparmor'),
    /** Container logs in CRI format: logs/<ns>/<id>.log. */
    containerLogs: join(s, 'logs'),
    /**
     * The embedded span store (tracing/span-store.ts): spans.jsonl and up to 7 rotated
     * spans-<ms>-<pid>.jsonl of 2 MiB each, written by every berth process, read by `berth trace`.
     */
    traces: join(s, 'traces'),
    /** Logs of berth's own services when run by `berth up`: services/<name>.log. */
    serviceLogs: join(s, 'services'),
    /** Data of the embedded nats-server and redis-server started by `berth up`. */
    embedded: {
      nats: join(s, 'embedded', 'nats'),
      redis: join(s, 'embedded', 'redis'),
      /** Generated passwords of the embedded servers (0600, in a 0700 dir), reused by every `berth up`. */
      credentials: join(s, 'embedded', 'credentials.json'),
    },
    /** Runtime files. */
    run: {
      /** PID and state file of the `berth up` supervisor. */
      supervisor: join(r, 'supervisor.json'),
      /** Control socket of the supervisor (down, status). */
      supervisorSocket: join(r, 'supervisor.sock'),
      /** The CRI gRPC socket. */
      criSocket: join(r, 'cri.sock'),
      /** Each service instance's socket for the node's other services (0700; kit socket-route.ts). */
      routes: join(r, 'routes'),
      /** Per-container monitor files (conmon pid files, attach sockets). */
      monitors: join(r, 'monitors'),
      /**
       * One Prometheus file_sd target file per service process (<service>-<pid>.json), naming the
       * address of its metrics endpoint; infra/prometheus.yml reads them.
       */
      metricsTargets: join(r, 'metrics'),
      /** Pinned pod network namespaces, one file per pod, made by the node's shim (podNetnsDir). */
      netns: podNetnsDir(r),
    },
  } as const;
}

/**
 * The directory of pinned pod network namespaces under a run root (layout.run.netns): the shim
 * pins them there, and the CRI gateway names a pod's in the pause container's spec before the shim
 * has pinned it.
 */
export function podNetnsDir(runRoot: string): string {
  return join(runRoot, 'netns');
}
export type HostLayout = ReturnType<typeof hostLayout>;
