import { access, constants } from 'node:fs/promises';
import { isMainThread } from 'node:worker_threads';
import { BERTH_VERSION, ShimApi } from '@berth/api';
import {
  call,
  publishEvent,
  type ServiceContext,
  type ServiceEntry,
  type ServiceSetup,
  serviceSetting,
} from '@berth/kit';
import { z } from 'zod';
import { ShimAgent } from './domain/agent.js';
import { DEFAULT_SWEEP_MS } from './domain/reconcile.js';
import { ShimStreams } from './handlers/streams.js';
import { observeContainers } from './metrics.js';
import { NetworkManager } from './network/manager.js';
import { networkSettings } from './network/settings.js';
import { createHandlers } from './service.js';

/** Sets the shim agent up on connections already made: its process main and a co-hosted one call it. */
export async function start(ctx: ServiceContext): Promise<ServiceSetup<typeof ShimApi>> {
  // conmon and runc inherit the umask. Under a loose one (000, a shell's or a supervisor's), a
  // task's exit file (its code, and the OOM marker) and the directories around it would be
  // writable by every local user, who could forge a container's exit. Write for the owner only.
  // Read by setting the strictest one meanwhile (a file made in between is only more private).
  if (isMainThread) process.umask(process.umask(0o077) | 0o022);
  else ctx.log.warn('a worker thread cannot set the umask: files it makes follow the process one');
  const agent = new ShimAgent({
    redis: ctx.redis,
    node: ctx.node,
    layout: ctx.layout,
    log: ctx.log,
    publish: (topic, ns, event) => publishEvent(ctx.nc, topic, ns, event),
    conmon: serviceSetting(ctx.config, 'shim', 'conmon', z.string().startsWith('/'), '/usr/bin/conmon'),
    runc: serviceSetting(ctx.config, 'shim', 'runc', z.string().startsWith('/'), '/usr/sbin/runc'),
    logSync: serviceSetting(ctx.config, 'shim', 'logSync', z.boolean(), false),
    apparmor: {
      parser: serviceSetting<string | undefined>(
        ctx.config,
        'shim',
        'apparmorParser',
        z.string().startsWith('/'),
        undefined,
      ),
    },
    // How long conmon may take to report runc's create or exec (an exec start waits less: its op's deadline).
    createTimeoutMs: serviceSetting(
      ctx.config,
      'shim',
      'runtimeTimeoutMs',
      z.number().int().min(100),
      60_000,
    ),
  });
  // One agent per node: a second one would race the first on creates and exit files.
  const other = await call(ctx.nc, ShimApi, 'info', {}, { node: ctx.node, timeoutMs: 500 }).catch(
    () => undefined,
  );
  if (other)
    ctx.log.warn({ other_pid: other.pid }, 'another shim agent already answers for this node: run only one');
  // Asked now, so the first task's create does not wait for `conmon --help`.
  void agent.host.skipLogSync();
  const found = await agent.recover();
  ctx.log.info(found, 'recovered tasks');
  // Pod networks: release what a crash mid-ADD or a reboot left before serving new setups.
  const network = new NetworkManager({ layout: ctx.layout, ...networkSettings(ctx.config) });
  const netReport = await network.recover();
  if (netReport.released.length || netReport.failed.length) ctx.log.info(netReport, 'recovered pod networks');
  for (const f of netReport.failed) ctx.log.warn(f, 'pod network DEL failed: kept for the next attempt');
  observeContainers(() => agent.all());
  agent.startSweeper(
    serviceSetting(ctx.config, 'shim', 'sweepMs', z.number().int().min(50), DEFAULT_SWEEP_MS),
  );
  const streams = new ShimStreams(agent, { nc: ctx.nc });
  return {
    handlers: createHandlers(agent, network, streams),
    checks: async () => ({
      conmon: await executable(agent.conmon),
      runc: await executable(agent.runcBinary),
    }),
    close: async () => {
      streams.close();
      await agent.close();
    },
  };
}

/** The shim agent as runService and runCohosted start it. */
export const entry: ServiceEntry<typeof ShimApi> = { service: ShimApi, version: BERTH_VERSION, setup: start };

/** "ok" when the helper binary the agent runs is there and executable, else what is wrong. */
async function executable(path: string): Promise<string> {
  try {
    await access(path, constants.X_OK);
    return 'ok';
  } catch (err) {
    return `${path}: ${(err as Error).message}`;
  }
}
