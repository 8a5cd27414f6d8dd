import { parseArgs } from 'node:util';
import { BerthError, Code, exitCodeOf, toBerthError } from '@berth/api/errors';
import { BERTH_VERSION } from '@berth/api/version';
import type { Command } from './command.js';
import { containersCommands } from './commands/containers.js';
import { imagesCommands } from './commands/images.js';
import { networkCommands } from './commands/network.js';
import { snapshotsCommands } from './commands/snapshots.js';
import { stackCommands } from './commands/stack.js';
import type { ContextOptions } from './context.js';
import { splitGlobalOptions } from './global-options.js';
import { traceCommands } from './trace/commands.js';

/** Every command of the CLI, from the tables of each area. */
export const commands: Command[] = [
  ...stackCommands,
  ...imagesCommands,
  ...snapshotsCommands,
  ...containersCommands,
  ...networkCommands,
  ...traceCommands,
];

function help(): string {
  const width = Math.max(...commands.map((c) => c.name.length), 8);
  // Code-unit order, not localeCompare: the first localeCompare loads ICU's collator (~15 ms of
  // a 100 ms budget), and for names of lowercase letters, digits, '-' and spaces both orders agree.
  const lines = commands
    .slice()
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
    .map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`);
  return `Usage: berth [-n NAMESPACE] [--trace] COMMAND [OPTIONS]\n\nberth ${BERTH_VERSION}: a container manager for a node.\n\nGlobal options:\n  -n, --namespace NAME  work in namespace NAME (default: $BERTH_NAMESPACE, else "default")\n  --trace               print the command's trace id on stderr (or BERTH_TRACE=1)\n\nCommands:\n${lines.join('\n')}\n\nRun 'berth COMMAND --help' for more on a command.\n`;
}

/** Finds the command whose (possibly multi-word) name is the longest prefix of argv. */
function findCommand(argv: string[]): { cmd: Command; rest: string[] } | undefined {
  let best: { cmd: Command; rest: string[] } | undefined;
  for (const cmd of commands) {
    const words = cmd.name.split(' ');
    if (words.every((w, i) => argv[i] === w) && (!best || words.length > best.cmd.name.split(' ').length)) {
      best = { cmd, rest: argv.slice(words.length) };
    }
  }
  return best;
}

/** Where a command line reads its environment and writes its output. */
export interface CommandIo {
  /** Its environment: config, BERTH_NAMESPACE (which -n sets in it), BERTH_TRACE, OTLP settings. */
  env: NodeJS.ProcessEnv;
  out: NodeJS.WriteStream;
  err: NodeJS.WriteStream;
  /** The config loaded from `env` (served.ts reads it before it accepts), else it is loaded here. */
  config?: ContextOptions['config'];
  /** A NATS connection the command shares with others (served.ts), else it makes its own. */
  sharedNats?: ContextOptions['sharedNats'];
  /** True when the `berth up` supervisor runs it for the launcher (served.ts): so its trace says. */
  served?: boolean;
  /** The user's working directory, when not this process's (served.ts). */
  cwd?: string;
  /** Where the user's signals come from, when not this process's (served.ts). */
  onSignal?: ContextOptions['onSignal'];
  /** Resolves when the user is gone (a served command's client hung up). */
  gone?: Promise<void>;
}

/** A command line as parsed: a text to print (help, version, a command's usage) or a command to run. */
export type ParsedCommandLine =
  | { kind: 'text'; text: string }
  | {
      kind: 'command';
      cmd: Command;
      values: ReturnType<typeof parseArgs>['values'];
      positionals: string[];
      /** -n/--namespace, when given. */
      namespace: string | undefined;
      trace: boolean;
    };

/** Parses a command line (global options, command, its arguments); a usage error is thrown. */
export function parseCommandLine(args: string[]): ParsedCommandLine {
  const { globals, rest: argv } = splitGlobalOptions(args);
  if (argv.length === 0 || argv[0] === '--help' || argv[0] === '-h' || argv[0] === 'help') {
    return { kind: 'text', text: help() };
  }
  if (argv[0] === '--version' || argv[0] === 'version') {
    return { kind: 'text', text: `berth ${BERTH_VERSION}\n` };
  }
  const found = findCommand(argv);
  if (!found) throw new BerthError(Code.INVALID_ARGUMENT, `unknown command "${argv[0]}"; see 'berth --help'`);
  const { cmd, rest } = found;
  if (rest.includes('--help') && (!cmd.stopAtFirstPositional || rest[0] === '--help')) {
    return {
      kind: 'text',
      text: `Usage: berth ${cmd.name} ${cmd.usage}\n\n${cmd.summary}\n${optionHelp(cmd)}`,
    };
  }
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({
      args: splitAtFirstPositional(cmd, rest),
      options: cmd.options ?? {},
      allowPositionals: true,
      strict: true,
    });
  } catch (err) {
    throw new BerthError(Code.INVALID_ARGUMENT, `berth ${cmd.name}: ${(err as Error).message}`);
  }
  if (cmd.stopAtFirstPositional) {
    const tail = rest.slice(rest.length - trailing(cmd, rest).length);
    parsed.positionals.push(...tail);
  }
  return {
    kind: 'command',
    cmd,
    values: parsed.values,
    positionals: parsed.positionals,
    namespace: globals.namespace,
    trace: globals.trace === true,
  };
}

/**
 * Runs one command line (global options, command, its arguments) and returns its exit code; a
 * failure is thrown, for the caller to print (`failureOf`).
 */
export async function runCommandLine(args: string[], io: CommandIo): Promise<number> {
  const line = parseCommandLine(args);
  if (line.kind === 'text') {
    io.out.write(line.text);
    return 0;
  }
  const { cmd } = line;
  // Through the environment, which the context reads, so `berth up`'s children and any berth
  // started from here work in the same namespace.
  if (line.namespace !== undefined) io.env.BERTH_NAMESPACE = line.namespace;
  const showTrace = line.trace || io.env.BERTH_TRACE === '1';
  // Loaded here, not at the top: `--version`, `--help` and a usage error need neither the config
  // (zod), NATS nor the OpenTelemetry API.
  const [{ createContext }, tracing] = await Promise.all([
    import('./context.js'),
    import('@berth/kit/tracing'),
  ]);
  const ctx = createContext({
    env: io.env,
    out: io.out,
    err: io.err,
    ...(io.config ? { config: io.config } : {}),
    ...(io.sharedNats ? { sharedNats: io.sharedNats } : {}),
    ...(io.cwd ? { cwd: io.cwd } : {}),
    ...(io.onSignal ? { onSignal: io.onSignal } : {}),
    ...(io.gone ? { gone: io.gone } : {}),
  });
  // Always a root span and traceparent on every call, recorded by the lite tracer (never the SDK,
  // which costs more to load than most commands take); `berth trace` does not record itself.
  const telemetry = tracing.startCliTelemetry({
    service: 'berth',
    version: BERTH_VERSION,
    env: io.env,
    node: ctx.config.nodeId,
    ...(io.served ? { attributes: { 'berth.cli.served': true } } : {}),
    ...(cmd.name === 'trace' ? {} : { storeDir: tracing.traceStoreDir(ctx.config, io.env) }),
  });
  try {
    // The command's span is the root of the trace every service call joins.
    return await telemetry.run(`berth ${cmd.name}`, () =>
      cmd.run({ values: line.values, positionals: line.positionals }, ctx),
    );
  } finally {
    // The root span has ended: the spans go to the span store (and, bounded to a few ms, to a
    // collector) while NATS drains, which waits for the server's answer to its flush.
    await Promise.all([ctx.close(), telemetry.finish()]);
    if (showTrace) io.err.write(`berth: trace id ${telemetry.traceId()}\n`);
  }
}

/** What a failed command line prints on stderr, and its exit code. */
export function failureOf(err: unknown): { line: string; code: number } {
  const e = toBerthError(err);
  return { line: `berth: ${e.message}\n`, code: exitCodeOf[e.code] };
}

function optionHelp(cmd: Command): string {
  const opts = Object.entries(cmd.options ?? {});
  if (opts.length === 0) return '';
  const rows = opts.map(
    ([name, o]) => `  ${o.short ? `-${o.short}, ` : '    '}--${name}${o.type === 'string' ? ' VALUE' : ''}`,
  );
  return `\nOptions:\n${rows.join('\n')}\n`;
}

/** For commands like `run IMAGE CMD...`, everything after the first positional belongs to CMD. */
function trailing(cmd: Command, rest: string[]): string[] {
  const opts = cmd.options ?? {};
  for (let i = 0; i < rest.length; i++) {
    const a = rest[i] as string;
    if (a === '--') return rest.slice(i + 1);
    if (a.startsWith('-')) {
      const name = a.startsWith('--') ? a.slice(2).split('=')[0] : undefined;
      const spec = name ? opts[name] : Object.values(opts).find((o) => o.short === a.slice(1, 2));
      if (spec?.type === 'string' && !a.includes('=') && !(a.length > 2 && !a.startsWith('--'))) i++;
      continue;
    }
    return rest.slice(i);
  }
  return [];
}

function splitAtFirstPositional(cmd: Command, rest: string[]): string[] {
  if (!cmd.stopAtFirstPositional) return rest;
  const tail = trailing(cmd, rest);
  const head = rest.slice(0, rest.length - tail.length);
  return head[head.length - 1] === '--' ? head.slice(0, -1) : head;
}
