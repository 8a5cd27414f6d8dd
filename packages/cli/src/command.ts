import type { ParseArgsConfig } from 'node:util';
import type { CliContext } from './context.js';

export type OptionSpec = NonNullable<ParseArgsConfig['options']>;

/** Parsed arguments handed to a command. */
export interface CommandArgs {
  values: Record<string, string | boolean | (string | boolean)[] | undefined>;
  positionals: string[];
}

/**
 * One CLI command. `name` may have several words ("image inspect"): the longest matching
 * name wins. run() returns the process exit code; BerthErrors thrown become one line on stderr.
 */
export interface Command {
  name: string;
  summary: string;
  /** Usage after the command name, e.g. "[OPTIONS] IMAGE [COMMAND] [ARG...]". */
  usage: string;
  options?: OptionSpec;
  /** Stop option parsing at the first positional (for `run IMAGE CMD --flags-of-cmd`). */
  stopAtFirstPositional?: boolean;
  run(args: CommandArgs, ctx: CliContext): Promise<number>;
}
