import type { Command } from '../command.js';

// The NATS call and the contracts load when the command runs, not for every `berth` invocation.
const impl = () => import('../network/commands.js');

/** `berth network ls`. */
export const networkCommands: Command[] = [
  {
    name: 'network ls',
    summary: "List this node's CNI networks (the first is the one containers and pods join)",
    usage: '[-q]',
    options: { quiet: { type: 'boolean', short: 'q' } },
    run: async (args, ctx) => (await impl()).networkLsCommand(args.values.quiet === true, ctx),
  },
];
