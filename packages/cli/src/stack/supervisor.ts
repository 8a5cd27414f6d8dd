import { mkdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { Server } from 'node:net';
import { fileURLToPath } from 'node:url';
import { BerthError, Code } from '@berth/api/errors';
import type { Service } from '@berth/api/subjects';
import { hostLayout } from '@berth/kit/layout';
import type { ChildState, SupervisorState } from '../context.js';
import type { CommandRunner, ServedClient, ServedLine, ServedModule } from '../served-protocol.js';
import { childKey, orphansOf, stopOrphans } from './adopt.js';
import { type BackoffPolicy, type ChildSpec, DEFAULT_BACKOFF, Supervised } from './child.js';
import {
  type ControlReply,
  type ControlRunRequest,
  controlRequest,
  listenControl,
  removeStaleSocket,
} from './control.js';
import { assertPortFree, embeddedAnswers, embeddedSpec, waitEmbeddedReady } from './embedded.js';
import {
  COHOSTED_LOGINS_ENV,
  type CohostedPlan,
  MALLOC_ENV,
  STOP_ORDER,
  type StackPlan,
} from './stack-plan.js';

export { MALLOC_ENV } from './stack-plan.js';

/** Where the supervisor reports what it does: JSON lines when detached, short lines in a terminal. */
export type SupervisorLog = (msg: string, fields?: Record<string, unknown>) => void;

/**
 * The CLI bundle served commands run from (src/served.ts, built by bundle.mjs beside this
 * package's other bundles): loaded by the supervisor only when the first one comes.
 */
const SERVED_BUNDLE = fileURLToPath(new URL('../bundle/served.cjs', import.meta.url));

/** A build restored from turbo's cache writes a bundle and its inputs within the same moment. */
const SAME_BUILD_MS = 1000;

/**
 * True when none of the files the served bundle was made of (dist/bundle/inputs.json) is newer
 * than it (built at `builtMs`): a package rebuilt with tsc alone runs its dist/ modules when run
 * by hand (bin/berth.js), and must not be answered by the older bundle here.
 */
function servedBundleFresh(builtMs: number): boolean {
  const dir = fileURLToPath(new URL('../bundle/', import.meta.url));
  try {
    const meta = JSON.parse(readFileSync(`${dir}inputs.json`, 'utf8')) as {
      inputs: Record<string, string[]>;
    };
    const files = meta.inputs.served;
    const mtime = (p: string) => statSync(dir + p, { throwIfNoEntry: false })?.mtimeMs;
    return files?.every((p) => (mtime(p) ?? Number.POSITIVE_INFINITY) <= builtMs + SAME_BUILD_MS) === true;
  } catch {
    return false;
  }
}

/** Env variables only the supervisor reads; never passed on to services. */
export const SUPERVISOR_ENV = { plan: 'BERTH_SUPERVISOR_PLAN' } as const;

/**
 * Runs one stack: the embedded servers (when no URL is configured), then every service replica as
 * its own process, restarting any that dies. Publishes its state to runRoot/supervisor.json and
 * takes `status`/`down` on runRoot/supervisor.sock. `down` (or SIGTERM to the supervisor) stops the
 * services in STOP_ORDER, then the embedded servers; containers are never touched.
 */
export class Supervisor {
  private readonly layout;
  private readonly embedded: Supervised[] = [];
  private readonly services: Supervised[] = [];
  private control: Server | undefined;
  /** The served commands' runner (src/served.ts), once the first one came, with its bundle's time. */
  private served: { mtimeNs: bigint; server: CommandRunner } | undefined;
  private stopping: Promise<void> | undefined;
  private readonly startedAt = new Date().toISOString();
  private resolveDone!: () => void;
  /** Resolves once the stack has been stopped (by down, a signal, or a failed start). */
  readonly done = new Promise<void>((r) => {
    this.resolveDone = r;
  });

  constructor(
    readonly plan: StackPlan,
    private readonly log: SupervisorLog,
    private readonly backoff: BackoffPolicy = DEFAULT_BACKOFF,
  ) {
    this.layout = hostLayout(plan);
  }

  /**
   * Starts everything and returns once the embedded servers listen and every service process is
   * spawned (services announce themselves on NATS; `berth up` waits for that). What a supervisor
   * that died left running from the same plan is adopted instead of started again (containers,
   * services and the embedded servers carry on; see adopt.ts), what it left that this plan has no
   * place for is stopped. On failure it stops what it started and throws.
   */
  async start(): Promise<void> {
    mkdirSync(this.plan.runRoot, { recursive: true, mode: 0o755 });
    mkdirSync(this.layout.serviceLogs, { recursive: true, mode: 0o750 });
    await this.takeSocket();
    // Read before this supervisor's first save() overwrites the dead one's state file.
    const orphans = orphansOf(this.layout.run.supervisor);
    try {
      for (const e of this.plan.embedded) {
        this.checkNotStopping();
        const child = new Supervised(
          embeddedSpec(e, this.plan.nodeId, this.embeddedEnv()),
          () => this.save(),
          this.backoff,
        );
        this.embedded.push(child);
        const old = await this.takeOrphan(orphans, child);
        if (old && (await embeddedAnswers(e, old))) {
          this.log(`${e.kind} adopted on 127.0.0.1:${e.port}`, { child: old });
          continue;
        }
        // Adopted but not answering: replaced, as a server that died would be.
        if (old) await child.stop(this.plan.stopGraceMs);
        await assertPortFree(e);
        const proc = child.start();
        await waitEmbeddedReady(e, proc);
        this.log(`${e.kind} listening on 127.0.0.1:${e.port}`, { child: proc.pid, data: e.dataDir });
      }
      // Services the plan no longer runs as they ran (co-hosted now, or fewer replicas) go before
      // any new one starts: never two shims, or two of anything, on one node.
      const planned = new Set(
        this.plan.cohosted ? ['cohosted#1'] : this.plan.services.map((s) => `${s.service}#${s.replica}`),
      );
      const unplanned = [...orphans.values()].filter(
        (o) => o.kind === 'service' && !planned.has(childKey(o)),
      );
      for (const o of unplanned) orphans.delete(childKey(o));
      for (const line of await stopOrphans(unplanned, this.plan.stopGraceMs)) this.log(line);
      if (this.plan.cohosted) await this.startCohosted(this.plan.cohosted, orphans);
      for (const s of this.plan.cohosted ? [] : this.plan.services) {
        this.checkNotStopping();
        const env = this.serviceEnv(s.service);
        const spec: ChildSpec = {
          name: s.service,
          kind: 'service',
          replica: s.replica,
          command: process.execPath,
          args: [...s.v8Flags, s.main],
          env,
          logFile: s.logFile,
          marker: s.main,
        };
        const child = new Supervised(spec, () => this.onChildChange(child), this.backoff);
        this.services.push(child);
        const old = await this.takeOrphan(orphans, child);
        if (old) {
          this.log(`adopted ${s.service}#${s.replica}`, { child: old, log: s.logFile });
          continue;
        }
        const proc = child.start();
        this.log(`started ${s.service}#${s.replica}`, { child: proc.pid, log: s.logFile });
      }
      for (const line of await stopOrphans(orphans.values(), this.plan.stopGraceMs)) this.log(line);
      this.save();
    } catch (err) {
      this.log('start-up failed; stopping what was started', { err: (err as Error).message });
      await this.down(() => undefined);
      throw err;
    }
  }

  /** Spawns the one process that runs every service of the plan; it is restarted as a whole. */
  private async startCohosted(co: CohostedPlan, orphans: Map<string, ChildState>): Promise<void> {
    this.checkNotStopping();
    const names = this.plan.services.map((s) => s.service);
    const spec: ChildSpec = {
      name: 'cohosted',
      kind: 'service',
      replica: 1,
      command: process.execPath,
      args: [...co.v8Flags, co.main],
      env: this.cohostedEnv(names),
      logFile: co.logFile,
      marker: co.main,
      services: names,
    };
    const child = new Supervised(spec, () => this.onChildChange(child), this.backoff);
    this.services.push(child);
    const old = await this.takeOrphan(orphans, child);
    if (old) {
      this.log(`adopted ${names.join(', ')} co-hosted in one process`, { child: old, log: co.logFile });
      return;
    }
    const proc = child.start();
    this.log(`started ${names.join(', ')} co-hosted in one process`, { child: proc.pid, log: co.logFile });
  }

  /**
   * Adopts the orphan of the same name and replica when it was started from the same spec and
   * still runs; returns its pid. One started from another spec (the plan or berth changed) is
   * stopped, so the caller starts a new one in its place.
   */
  private async takeOrphan(orphans: Map<string, ChildState>, child: Supervised): Promise<number | undefined> {
    const key = childKey(child.spec);
    const old = orphans.get(key);
    if (!old) return undefined;
    orphans.delete(key);
    if (child.adopt(old)) return old.pid ?? undefined;
    for (const line of await stopOrphans([old], this.plan.stopGraceMs)) this.log(`${line}: its spec changed`);
    return undefined;
  }

  /**
   * Resolves once the control socket has closed its last connection (after `down`), so the
   * process can exit without cutting off the reply to `berth down`. Bounded by `ms`.
   */
  async drained(ms: number): Promise<void> {
    const control = this.control;
    if (!control) return;
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, ms).unref();
      control.once('close', () => {
        clearTimeout(t);
        resolve();
      });
      if (!control.listening) control.getConnections((_e, n) => n === 0 && resolve());
    });
  }

  /** `berth down` may arrive while the stack is starting: then nothing new may be spawned. */
  private checkNotStopping(): void {
    if (this.stopping)
      throw new BerthError(Code.CANCELLED, 'berth down was requested while the stack was starting');
  }

  /** The state file's content. */
  state(): SupervisorState {
    return {
      pid: process.pid,
      natsUrl: this.plan.natsUrl,
      redisUrl: this.plan.redisUrl,
      ...(this.plan.logins?.cli ? { cliNatsUrl: this.plan.logins.cli.natsUrl } : {}),
      embedded: this.plan.embedded.length > 0,
      nodeId: this.plan.nodeId,
      startedAt: this.startedAt,
      socket: this.layout.run.supervisorSocket,
      children: [...this.embedded, ...this.services].map((c) => c.state()),
    };
  }

  /**
   * Stops the stack in order and removes the socket and state file. Calling it again while it
   * runs returns the same promise.
   */
  down(progress: (r: ControlReply) => void): Promise<void> {
    this.stopping ??= this.stopAll(progress).finally(() => this.resolveDone());
    return this.stopping;
  }

  private async stopAll(progress: (r: ControlReply) => void): Promise<void> {
    const stopOne = async (c: Supervised) => {
      const pid = c.running ? (c.pid ?? null) : null;
      const how = await c.stop(this.plan.stopGraceMs);
      const result =
        how === 'not-running'
          ? 'was not running'
          : how === 'killed'
            ? 'killed after the grace period'
            : 'stopped';
      this.log(`${c.spec.name}#${c.spec.replica} ${result}`, { child: pid, exit: c.state().lastExit });
      progress({ type: 'progress', name: c.spec.name, replica: c.spec.replica, pid, result });
    };
    for (const group of STOP_ORDER) {
      const members = this.services.filter((c) => (group as readonly string[]).includes(c.spec.name));
      await Promise.all(members.map(stopOne));
    }
    // The co-hosted process stops its services in the same order itself.
    const hosts = this.services.filter(
      (c) => !STOP_ORDER.some((g) => (g as readonly string[]).includes(c.spec.name)),
    );
    await Promise.all(hosts.map(stopOne));
    // Before NATS stops under it (no served command starts once stopping is set).
    await this.served?.server.close();
    // NATS last, so services that drain on SIGTERM still reach it.
    for (const c of [...this.embedded].reverse()) await stopOne(c);
    // Stop listening but let the connection that asked for `down` get its final line.
    this.control?.close();
    removeStaleSocket(this.layout.run.supervisorSocket);
    rmSync(this.layout.run.supervisor, { force: true });
  }

  /** The servers need none of berth's settings, least of all the URLs that carry their secrets. */
  private embeddedEnv(): NodeJS.ProcessEnv {
    const env: NodeJS.ProcessEnv = {};
    for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('BERTH_')) env[k] = v;
    return env;
  }

  /**
   * Services get the URLs, credentials included, in their environment: unlike argv, a process's
   * environment is readable only by its own user and root (/proc/<pid>/environ is 0400). Each
   * gets its own login where the embedded servers know one per service, else the shared URLs.
   */
  private serviceEnv(service: Service): NodeJS.ProcessEnv {
    const env: NodeJS.ProcessEnv = { ...MALLOC_ENV, ...process.env };
    delete env[SUPERVISOR_ENV.plan];
    const own = this.plan.logins?.[service];
    env.BERTH_NATS_URL = own?.natsUrl ?? this.plan.natsUrl;
    env.BERTH_REDIS_URL = own?.redisUrl ?? this.plan.redisUrl;
    env.BERTH_NODE_ID = this.plan.nodeId;
    env.BERTH_STATE_ROOT = this.plan.stateRoot;
    env.BERTH_RUN_ROOT = this.plan.runRoot;
    return env;
  }

  /**
   * The co-hosted process's environment: each service's own login, so it keeps the NATS
   * permissions and Redis ACL of its principal; the shared URLs only where a service has none.
   */
  private cohostedEnv(names: readonly Service[]): NodeJS.ProcessEnv {
    const env: NodeJS.ProcessEnv = { ...MALLOC_ENV, ...process.env };
    delete env[SUPERVISOR_ENV.plan];
    const logins: Record<string, { natsUrl?: string; redisUrl?: string }> = {};
    for (const name of names) {
      const own = this.plan.logins?.[name];
      logins[name] = {
        natsUrl: own?.natsUrl ?? this.plan.natsUrl,
        redisUrl: own?.redisUrl ?? this.plan.redisUrl,
      };
    }
    env[COHOSTED_LOGINS_ENV] = JSON.stringify(logins);
    delete env.BERTH_NATS_URL;
    delete env.BERTH_REDIS_URL;
    env.BERTH_NODE_ID = this.plan.nodeId;
    env.BERTH_STATE_ROOT = this.plan.stateRoot;
    env.BERTH_RUN_ROOT = this.plan.runRoot;
    return env;
  }

  private onChildChange(child: Supervised): void {
    const st = child.state();
    if (st.status === 'backoff') {
      this.log(`${st.name}#${st.replica} died (${st.lastExit}); restarting`, { restarts: st.restarts });
    }
    this.save();
  }

  /**
   * Runs a command for the `berth` client (src/served.ts) from the served bundle, loaded on the
   * first request: only while that file is the one beside the client (same modification time) and
   * as fresh as the client's own run would find it (servedBundleFresh), so an upgraded or rebuilt
   * CLI is never answered by the code of the build this supervisor loaded.
   */
  private async serve(
    socket: string,
    req: ControlRunRequest,
    send: (line: ServedLine) => boolean,
    client: ServedClient,
  ): Promise<void> {
    const mtimeNs = statSync(SERVED_BUNDLE, { throwIfNoEntry: false, bigint: true })?.mtimeNs;
    if (mtimeNs === undefined || String(mtimeNs) !== req.bundleMtimeNs || this.stopping) {
      send({ type: 'refused', reason: 'not the same build' });
      return;
    }
    if (!servedBundleFresh(Number(mtimeNs / 1_000_000n))) {
      send({ type: 'refused', reason: 'the served bundle is older than its sources' });
      return;
    }
    if (!this.served) {
      const mod = createRequire(import.meta.url)(SERVED_BUNDLE) as ServedModule;
      this.served = { mtimeNs, server: new mod.CommandServer(socket) };
    } else if (this.served.mtimeNs !== mtimeNs) {
      send({ type: 'refused', reason: 'the supervisor loaded an older build' });
      return;
    }
    await this.served.server.serve(req, send, client);
  }

  /**
   * Binds the control socket, which also keeps two supervisors off one run root: a socket that
   * answers means a stack is up; one that does not is left over from a dead supervisor.
   */
  private async takeSocket(): Promise<void> {
    const path = this.layout.run.supervisorSocket;
    const handler = {
      status: () => this.state(),
      down: (progress: (r: ControlReply) => void) => this.down(progress),
      run: (req: ControlRunRequest, send: (line: ServedLine) => boolean, client: ServedClient) =>
        this.serve(path, req, send, client),
    };
    try {
      // Binding fails while another socket file exists, so two concurrent `berth up` cannot both win.
      this.control = await listenControl(path, handler);
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw err;
    }
    const alive = await controlRequest(path, { op: 'status' }, { timeoutMs: 2000 }).then(
      () => true,
      () => false,
    );
    if (alive) throw new BerthError(Code.ALREADY_EXISTS, `berth is already up (socket ${path} answers)`);
    removeStaleSocket(path);
    this.control = await listenControl(path, handler);
  }

  /**
   * Rewrites the state file atomically (temp name + rename), so readers never see half of it.
   * Mode 0600: configured URLs may carry credentials (redis://:password@host).
   */
  private save(): void {
    if (this.stopping) return;
    const file = this.layout.run.supervisor;
    const tmp = `${file}.${process.pid}.tmp`;
    writeFileSync(tmp, `${JSON.stringify(this.state(), null, 2)}\n`, { mode: 0o600 });
    renameSync(tmp, file);
  }
}
