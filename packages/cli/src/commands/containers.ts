import { errors } from '@berth/api/errors';
import type { Command, OptionSpec } from '../command.js';

// The modules doing the work load when a command runs: `berth --help` and `berth ps` do not pay
// for `run`'s option parsing, the seccomp profiles or the terminal handling.
const api = () => import('../containers/api.js');
const impl = () => import('../containers/commands.js');
const runner = () => import('../containers/run.js');
const options = () => import('../containers/options.js');

/** Flags shared by `create` and `run` (docker/nerdctl spelling). */
export const createOptions: OptionSpec = {
  name: { type: 'string' },
  env: { type: 'string', short: 'e', multiple: true },
  'env-file': { type: 'string', multiple: true },
  workdir: { type: 'string', short: 'w' },
  user: { type: 'string', short: 'u' },
  volume: { type: 'string', short: 'v', multiple: true },
  memory: { type: 'string', short: 'm' },
  cpus: { type: 'string' },
  'cpu-shares': { type: 'string' },
  'pids-limit': { type: 'string' },
  'read-only': { type: 'boolean' },
  hostname: { type: 'string', short: 'h' },
  entrypoint: { type: 'string' },
  network: { type: 'string' },
  publish: { type: 'string', short: 'p', multiple: true },
  net: { type: 'string' },
  label: { type: 'string', short: 'l', multiple: true },
  'cap-add': { type: 'string', multiple: true },
  'cap-drop': { type: 'string', multiple: true },
  'security-opt': { type: 'string', multiple: true },
  dns: { type: 'string', multiple: true },
  'stop-signal': { type: 'string' },
  interactive: { type: 'boolean', short: 'i' },
  tty: { type: 'boolean', short: 't' },
  privileged: { type: 'boolean' },
  pid: { type: 'string' },
  ipc: { type: 'string' },
  uts: { type: 'string' },
  node: { type: 'string' },
};

/** The containers commands of the CLI (docker/nerdctl conventions). */
export const containersCommands: Command[] = [
  {
    name: 'run',
    summary: 'Create and start a container; without -d, stream its output and exit with its code',
    usage: '[OPTIONS] IMAGE [COMMAND] [ARG...]',
    options: { ...createOptions, rm: { type: 'boolean' }, detach: { type: 'boolean', short: 'd' } },
    stopAtFirstPositional: true,
    run: async (args, ctx) => {
      // NATS's handshake (a connect, the server's INFO, CONNECT and PING answered) runs while run's
      // modules load and its request is built; runContainer awaits the same connection. A failed
      // connect surfaces there (or not at all, for a usage error found first).
      ctx.nats().catch(() => undefined);
      return (await runner()).runContainer(args, ctx);
    },
  },
  {
    name: 'create',
    summary: 'Create a container (pulling its image if needed) without starting it',
    usage: '[OPTIONS] IMAGE [COMMAND] [ARG...]',
    options: createOptions,
    stopAtFirstPositional: true,
    run: async (args, ctx) => {
      ctx.out.write(`${await (await runner()).createContainer(args, ctx)}\n`);
      return 0;
    },
  },
  {
    name: 'start',
    summary: 'Start one or more created or stopped containers',
    usage: 'CONTAINER [CONTAINER...]',
    run: async (args, ctx) => {
      const [{ tasks }, { each }] = await Promise.all([api(), impl()]);
      const client = await tasks(ctx);
      return each(args.positionals, ctx, 'start', async (ref) => {
        const info = await client['get-container']({ id: ref });
        if (info.status === 'running' || info.status === 'paused') return ref;
        if (info.status !== 'created' || !info.task) await client.create({ id: info.container.id });
        await client.start({ id: info.container.id });
        return ref;
      });
    },
  },
  {
    name: 'ps',
    summary: 'List containers of this node (running ones unless -a; --all-nodes for every node)',
    usage: '[-a] [-q] [--filter label=K[=V]|status=S|name=N]... [--node NAME | --all-nodes]',
    options: {
      all: { type: 'boolean', short: 'a' },
      quiet: { type: 'boolean', short: 'q' },
      filter: { type: 'string', short: 'f', multiple: true },
      node: { type: 'string' },
      'all-nodes': { type: 'boolean' },
    },
    run: async (args, ctx) => {
      const node = args.values.node;
      const allNodes = args.values['all-nodes'] === true;
      if (typeof node === 'string' && allNodes)
        throw errors.invalid('ps: give --node NAME or --all-nodes, not both');
      return (await impl()).psCommand(
        args.values.all === true,
        args.values.quiet === true,
        (Array.isArray(args.values.filter) ? args.values.filter : []).map(String),
        ctx,
        allNodes ? { allNodes: true } : { node: typeof node === 'string' ? node : ctx.config.nodeId },
      );
    },
  },
  {
    name: 'update',
    summary: 'Change the resource limits of containers (live ones at once)',
    usage: '[--memory SIZE] [--cpus N] [--pids-limit N] CONTAINER [CONTAINER...]',
    options: {
      memory: { type: 'string', short: 'm' },
      cpus: { type: 'string' },
      'pids-limit': { type: 'string' },
    },
    run: async (args, ctx) => {
      const resources = (await options()).toResources(args.values);
      if (Object.keys(resources).length === 0)
        throw errors.invalid('update: give at least one of --memory, --cpus, --pids-limit');
      const [{ tasks }, { each }] = await Promise.all([api(), impl()]);
      const client = await tasks(ctx);
      return each(args.positionals, ctx, 'update', async (ref) => {
        const info = await client['get-container']({ id: ref });
        if (info.status === 'running' || info.status === 'paused')
          await client.update({ id: info.container.id, resources });
        else await client['update-container']({ id: info.container.id, resources });
        return ref;
      });
    },
  },
  {
    name: 'logs',
    summary: 'Print the output of a container',
    usage: '[-f] [--tail N] [--timestamps] CONTAINER',
    options: {
      follow: { type: 'boolean', short: 'f' },
      tail: { type: 'string', short: 'n' },
      timestamps: { type: 'boolean', short: 't' },
    },
    run: async (args, ctx) => {
      const [ref] = args.positionals;
      if (!ref || args.positionals.length > 1) throw errors.invalid('usage: berth logs [OPTIONS] CONTAINER');
      const tail = args.values.tail;
      return (await impl()).logsCommand(
        ref,
        {
          follow: args.values.follow === true,
          timestamps: args.values.timestamps === true,
          ...(typeof tail === 'string' ? { tail } : {}),
        },
        ctx,
      );
    },
  },
  {
    name: 'exec',
    summary: 'Run a command in a running container',
    usage: '[-d] [-it] [-e KEY=VALUE] [-w DIR] [-u USER] CONTAINER COMMAND [ARG...]',
    options: {
      detach: { type: 'boolean', short: 'd' },
      interactive: { type: 'boolean', short: 'i' },
      tty: { type: 'boolean', short: 't' },
      env: { type: 'string', short: 'e', multiple: true },
      workdir: { type: 'string', short: 'w' },
      user: { type: 'string', short: 'u' },
    },
    stopAtFirstPositional: true,
    run: async (args, ctx) => (await runner()).execInContainer(args, ctx),
  },
  {
    name: 'stop',
    summary: 'Stop containers: the stop signal, then SIGKILL after -t seconds (default 10)',
    usage: '[-t SECONDS] CONTAINER [CONTAINER...]',
    options: { time: { type: 'string', short: 't' } },
    run: async (args, ctx) => {
      const t = Number(args.values.time ?? 10);
      if (!Number.isFinite(t) || t < 0) throw errors.invalid(`invalid --time value "${args.values.time}"`);
      const [{ each }, { stopOne }] = await Promise.all([impl(), import('../containers/stop.js')]);
      return each(args.positionals, ctx, 'stop', (ref) => stopOne(ref, ctx, { seconds: t }));
    },
  },
  {
    name: 'kill',
    summary: 'Send a signal (default SIGKILL) to running containers',
    usage: '[-s SIGNAL] CONTAINER [CONTAINER...]',
    options: { signal: { type: 'string', short: 's' } },
    run: async (args, ctx) => {
      const [{ tasks }, { each }] = await Promise.all([api(), impl()]);
      const client = await tasks(ctx);
      const raw = String(args.values.signal ?? 'SIGKILL');
      const signal = /^\d+$/.test(raw)
        ? Number(raw)
        : raw.toUpperCase().startsWith('SIG')
          ? raw.toUpperCase()
          : `SIG${raw.toUpperCase()}`;
      return each(args.positionals, ctx, 'kill', async (ref) => {
        await client.kill({ id: ref, signal });
        return ref;
      });
    },
  },
  {
    name: 'rm',
    summary: 'Remove containers (-f: kill running ones first)',
    usage: '[-f] CONTAINER [CONTAINER...]',
    options: { force: { type: 'boolean', short: 'f' } },
    run: async (args, ctx) => {
      const [{ tasks }, { each }] = await Promise.all([api(), impl()]);
      const client = await tasks(ctx);
      return each(args.positionals, ctx, 'rm', async (ref) => {
        await client['delete-container']({ id: ref, force: args.values.force === true });
        return ref;
      });
    },
  },
  {
    name: 'inspect',
    summary: 'Print containers (metadata, spec, task) as JSON',
    usage: 'CONTAINER [CONTAINER...]',
    run: async (args, ctx) => {
      const { tasks } = await api();
      const client = await tasks(ctx);
      if (args.positionals.length === 0) throw errors.invalid('inspect: at least one container is required');
      const out = [];
      for (const ref of args.positionals) out.push(await client['get-container']({ id: ref }));
      ctx.out.write(`${JSON.stringify(out, null, 2)}\n`);
      return 0;
    },
  },
  {
    name: 'top',
    summary: 'Show the processes of a running container',
    usage: 'CONTAINER',
    run: async (args, ctx) => {
      const [ref] = args.positionals;
      if (!ref) throw errors.invalid('usage: berth top CONTAINER');
      return (await impl()).topCommand(ref, ctx);
    },
  },
  {
    name: 'stats',
    summary: 'Show CPU %, memory and pids of running containers, a sample a second until Ctrl-C',
    usage: '[--no-stream] [CONTAINER...]',
    options: { 'no-stream': { type: 'boolean' } },
    run: async (args, ctx) => {
      const [{ tasks }, { statsCommand }] = await Promise.all([api(), import('../containers/stats.js')]);
      return statsCommand(await tasks(ctx), args.positionals, args.values['no-stream'] !== true, ctx);
    },
  },
  {
    name: 'pause',
    summary: 'Freeze all processes of containers',
    usage: 'CONTAINER [CONTAINER...]',
    run: async (args, ctx) => {
      const [{ tasks }, { each }] = await Promise.all([api(), impl()]);
      const client = await tasks(ctx);
      return each(args.positionals, ctx, 'pause', async (ref) => {
        await client.pause({ id: ref });
        return ref;
      });
    },
  },
  {
    name: 'unpause',
    summary: 'Thaw paused containers',
    usage: 'CONTAINER [CONTAINER...]',
    run: async (args, ctx) => {
      const [{ tasks }, { each }] = await Promise.all([api(), impl()]);
      const client = await tasks(ctx);
      return each(args.positionals, ctx, 'unpause', async (ref) => {
        await client.resume({ id: ref });
        return ref;
      });
    },
  },
  {
    name: 'wait',
    summary: 'Wait for containers to stop and print their exit codes',
    usage: 'CONTAINER [CONTAINER...]',
    run: async (args, ctx) => {
      const [{ tasks }, { each }] = await Promise.all([api(), impl()]);
      const client = await tasks(ctx);
      return each(args.positionals, ctx, 'wait', async (ref) => {
        const info = await client['get-container']({ id: ref });
        if (!info.task) throw errors.precondition(`container "${ref}" has no task: it was never started`);
        const w = await (await api()).exitWatcher(ctx, info.container.id);
        try {
          w.check();
          return String((await w.exited).exitCode);
        } finally {
          w.close();
        }
      });
    },
  },
  {
    name: 'attach',
    summary: "Attach this terminal to a running container's process (its stdio) until it exits",
    usage: 'CONTAINER',
    run: async (args, ctx) => {
      const [ref] = args.positionals;
      if (!ref) throw errors.invalid('usage: berth attach CONTAINER');
      return (await runner()).attachContainer(ref, ctx);
    },
  },
  {
    name: 'events',
    summary: 'Stream events (containers, tasks, images) as they happen',
    usage: '',
    run: async (_args, ctx) => (await impl()).eventsCommand(ctx),
  },
];
