import { ShimApi, type ShimCniNetwork } from '@berth/api';
import { call } from '@berth/kit/client';
import type { Command } from '../command.js';
import { table } from '../containers/format.js';
import { type CliContext, namespaceOf } from '../context.js';

/** The CNI networks of this node, as its shim reads them from its conf dir (network-list). */
export async function listNetworks(ctx: CliContext): Promise<ShimCniNetwork[]> {
  const reply = await call(
    await ctx.nats(),
    ShimApi,
    'network-list',
    {},
    {
      node: ctx.config.nodeId,
      namespace: namespaceOf(),
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

/** `berth network ls`. */
export const networkCommandList: Command[] = [
  {
    name: 'network ls',
    summary: "List this node's CNI networks (the first is the one containers and pods join)",
    usage: '[-q]',
    options: { quiet: { type: 'boolean', short: 'q' } },
    run: async (args, ctx) => {
      const networks = await listNetworks(ctx);
      if (args.values.quiet === true) {
        ctx.out.write(networks.map((n) => `${n.name}\n`).join(''));
        return 0;
      }
      ctx.out.write(table(networkRows(networks)));
      return 0;
    },
  },
];
