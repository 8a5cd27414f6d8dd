import {
  BerthError,
  Code,
  DEFAULT_NAMESPACE,
  NAMESPACE_PATTERN,
  NAMESPACE_RULE,
  NODE_ID_PATTERN,
} from '@berth/api';
import { connectNats } from '@berth/kit/nats';
import type { TlsFiles } from '@berth/kit/tls';
import { ErrorCode, type NatsConnection, NatsError } from 'nats';
import { Containers } from './containers.js';
import { Events } from './events.js';
import { nodeHealth, type ServiceHealth } from './health.js';
import { Images } from './images.js';
import { Leases } from './leases.js';
import { Scope } from './scope.js';
import { Snapshots } from './snapshots.js';
import { Tasks } from './tasks.js';

/** NATS credentials: a user and password, a token, or a NATS user credentials (.creds) file. */
export type Credentials = { user: string; password: string } | { token: string } | { credsFile: string };

/** Options of {@link connect}. */
export interface ConnectOptions {
  /**
   * NATS server URL(s), comma-separated; `nats://user:pass@host:4222` or `nats://TOKEN@host`
   * carry credentials too (as BERTH_NATS_URL does).
   */
  natsUrl: string;
  credentials?: Credentials;
  /** The node whose image-service, snapshot-service and shim this client talks to; containers run there by default. */
  node: string;
  /** Namespace of images and containers (default `default`; CRI uses `k8s.io`). */
  namespace?: string;
  /** Client name the NATS server shows (default `berth-client`). */
  name?: string;
  /** Give up connecting after this long (default 10 s): `connect` then fails with UNAVAILABLE. */
  timeoutMs?: number;
  /**
   * TLS files (absolute paths): the CA that signed the servers' certificates (else the system's
   * CAs), and a client certificate and key for servers that want one. Servers are always verified.
   */
  tls?: TlsFiles;
}

/**
 * A connection to berth: the services of one node and namespace, typed from the same contract
 * definitions the services are built from. Make one with {@link connect}; `close()` it when done.
 */
export class Berth {
  /** Images of the node: pull (with progress), list, get, remove, tag, import/export, push. */
  readonly images: Images;
  /** Snapshots of the node: list, stat, usage, mounts, prepare/view/commit, remove. */
  readonly snapshots: Snapshots;
  /** Containers: create (from an image on the node), run, get, list, update, delete. */
  readonly containers: Containers;
  /** Tasks (processes of containers): create, start, wait, kill, exec, logs, stats, delete. */
  readonly tasks: Tasks;
  /** Events on `berth.events.>`, as async iterators with topic filters. */
  readonly events: Events;
  /** Leases of the node: what a lease holds is kept from garbage collection until it ends. */
  readonly leases: Leases;

  /** @internal Use {@link connect}. */
  constructor(
    private readonly scope: Scope,
    private readonly owned: boolean,
  ) {
    this.images = new Images(scope);
    this.snapshots = new Snapshots(scope);
    this.containers = new Containers(scope);
    this.tasks = new Tasks(scope);
    this.events = new Events(scope);
    this.leases = new Leases(scope);
  }

  /** The node host-local services are addressed on. */
  get node(): string {
    return this.scope.node;
  }

  /** The namespace of this client's objects. */
  get namespace(): string {
    return this.scope.namespace;
  }

  /** The underlying NATS connection (shared: do not close it, call {@link Berth.close}). */
  get nats(): NatsConnection {
    return this.scope.nc;
  }

  /** A client for another namespace on the same connection (closing it does not close the connection). */
  withNamespace(namespace: string): Berth {
    return new Berth(this.scope.withNamespace(checkNamespace(namespace)), false);
  }

  /**
   * The `info` of each of the node's services (image, snapshot, shim, task; the cri-gateway with
   * `includeCri`): version, pid, uptime and health checks, or the error when none answered.
   */
  health(opts: { includeCri?: boolean; timeoutMs?: number } = {}): Promise<ServiceHealth[]> {
    return nodeHealth(this.scope, opts);
  }

  /** Closes the connection after the messages in flight are sent (a no-op for a `withNamespace` view). */
  async close(): Promise<void> {
    if (!this.owned || this.scope.nc.isClosed()) return;
    await this.scope.nc.drain();
  }
}

function checkNamespace(ns: string): string {
  if (!NAMESPACE_PATTERN.test(ns)) {
    throw new BerthError(Code.INVALID_ARGUMENT, `namespace ${JSON.stringify(ns)}: ${NAMESPACE_RULE}`);
  }
  return ns;
}

/**
 * Connects to berth's NATS and returns a {@link Berth} for one node and namespace. Fails with
 * INVALID_ARGUMENT for bad options, UNAUTHENTICATED when NATS refuses the credentials and
 * UNAVAILABLE when no server answers within `timeoutMs`. Once connected, the client reconnects
 * on its own if the server restarts.
 */
export async function connect(opts: ConnectOptions): Promise<Berth> {
  if (typeof opts.natsUrl !== 'string' || opts.natsUrl.trim() === '') {
    throw new BerthError(Code.INVALID_ARGUMENT, 'connect: natsUrl is required');
  }
  if (typeof opts.node !== 'string' || !NODE_ID_PATTERN.test(opts.node)) {
    throw new BerthError(Code.INVALID_ARGUMENT, `connect: node "${opts.node}" must match ${NODE_ID_PATTERN}`);
  }
  const namespace = checkNamespace(opts.namespace ?? DEFAULT_NAMESPACE);
  const c = opts.credentials;
  const extra = {
    waitOnFirstConnect: false,
    timeout: opts.timeoutMs ?? 10_000,
    ...(c && 'user' in c ? { user: c.user, pass: c.password } : {}),
    ...(c && 'token' in c ? { token: c.token } : {}),
  };
  let nc: NatsConnection;
  try {
    nc = await connectNats({
      url: opts.natsUrl,
      name: opts.name ?? 'berth-client',
      ...(c && 'credsFile' in c ? { creds: c.credsFile } : {}),
      ...(opts.tls ? { tls: opts.tls } : {}),
      extra,
    });
  } catch (err) {
    throw connectError(err, opts.natsUrl);
  }
  return new Berth(new Scope(nc, opts.node, namespace), true);
}

function connectError(err: unknown, url: string): BerthError {
  if (err instanceof BerthError) return err;
  // The URL may carry credentials: name only its servers.
  const where = url.replace(/\/\/[^/@]*@/g, '//');
  if (
    err instanceof NatsError &&
    (err.code === ErrorCode.AuthorizationViolation || err.code === ErrorCode.AuthenticationExpired)
  ) {
    return new BerthError(Code.UNAUTHENTICATED, `NATS at ${where} refused the credentials`, { cause: err });
  }
  return new BerthError(
    Code.UNAVAILABLE,
    `cannot connect to NATS at ${where}: ${(err as Error)?.message ?? String(err)}`,
    { cause: err },
  );
}
