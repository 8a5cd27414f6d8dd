import { ShimApi, type ShimCniNetwork } from '@berth/api';
import { call } from '@berth/kit/client';
import { table } from '../containers/format.js';
import type { CliContext } from '../context.js';

/** The CNI networks of this node, as its shim reads them from its conf dir (network-list). */
export async function listNetworks(ctx: CliContext): Promise<ShimCniNetwork[]> {
  const reply = await call(
    await ctx.nats(),
    ShimApi,
    'network-list',
    {},
    {
      node: ctx.config.nodeId,
      namespace: ctx.namespace,
    },
  );
  return reply.networks;
}

/** The rows of `berth network ls`: the default network marked, a broken file with its error. */
export function networkRows(networks: ShimCniNetwork[]): string[][] {
  return [
    ['NAME', 'PLUGINS', 'SUBNET', 'FILE'],
    ...networks.map((n) => [
      n.default ? `${n.name} (default)` : n.name,
      n.error ? `error: ${n.error}` : n.plugins.join(','),
      n.subnets.join(','),
      n.file,
    ]),
  ];
}

/** `berth network ls [-q]`: one name a line, or the table. */
export async function networkLsCommand(quiet: boolean, ctx: CliContext): Promise<number> {
  const networks = await listNetworks(ctx);
  if (quiet) {
    ctx.out.write(networks.map((n) => `${n.name}\n`).join(''));
    return 0;
  }
  ctx.out.write(table(networkRows(networks)));
  return 0;
}
