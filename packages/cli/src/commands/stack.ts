import type { Command } from '../command.js';

// Loaded when a stack command runs, so other commands do not pay for the stack's modules.
const impl = () => import('../stack/commands.js');

/** The stack commands of the CLI: up, down, status, config acl, service logs. */
export const stackCommands: Command[] = [
  {
    name: 'up',
    summary: 'Start the berth services (and embedded NATS/Redis if none is configured) under a supervisor',
    usage: '[--foreground] [--cohosted] [--replicas SERVICE=N]... [--timeout SECONDS]',
    options: {
      foreground: { type: 'boolean', short: 'f' },
      cohosted: { type: 'boolean' },
      replicas: { type: 'string', multiple: true },
      timeout: { type: 'string' },
    },
    run: async (args, ctx) => (await impl()).up(args, ctx),
  },
  {
    name: 'down',
    summary: 'Stop the services started by berth up, in order (containers keep running unless --containers)',
    usage: '[--containers [-t SECONDS]]',
    options: { containers: { type: 'boolean' }, time: { type: 'string', short: 't' } },
    run: async (args, ctx) => (await impl()).down(args, ctx),
  },
  {
    name: 'status',
    summary:
      'Show every berth service, its replicas, their health and metrics endpoints (from NATS service discovery)',
    usage: '[--json]',
    options: { json: { type: 'boolean' } },
    run: async (args, ctx) => (await impl()).status(args, ctx),
  },
  {
    name: 'config acl',
    summary:
      'Print per-service NATS users and Redis ACL users (with the berth settings to use them) for external servers',
    usage: '[--node NODE] [--nats-url URL] [--redis-url URL] [--secrets FILE] [--admin USER]',
    options: {
      node: { type: 'string' },
      'nats-url': { type: 'string' },
      'redis-url': { type: 'string' },
      secrets: { type: 'string' },
      admin: { type: 'string' },
    },
    run: async (args, ctx) => (await import('../stack/acl.js')).configAcl(args, ctx),
  },
  {
    name: 'service top',
    summary:
      "Show each service replica's request rate, error rate, p95 latency and in-flight requests, live (from their metrics)",
    usage: '[--interval SECONDS] [--once] [--json]',
    options: { interval: { type: 'string' }, once: { type: 'boolean' }, json: { type: 'boolean' } },
    run: async (args, ctx) => (await import('../stack/top.js')).top(args, ctx),
  },
  {
    name: 'service logs',
    summary:
      'Print the log of a berth service run by berth up (or the supervisor, nats-server, redis-server)',
    usage: '[--tail N] [--follow] [--replica N] SERVICE',
    options: {
      tail: { type: 'string', short: 'n' },
      follow: { type: 'boolean', short: 'f' },
      replica: { type: 'string' },
    },
    run: async (args, ctx) => (await impl()).serviceLogs(args, ctx),
  },
];
