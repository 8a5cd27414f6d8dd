import { errors } from '@berth/api/errors';
import { NAMESPACE_PATTERN, NAMESPACE_RULE } from '@berth/api/subjects';

/** Options given before the command name, for every command (as ctr's and nerdctl's). */
export interface GlobalOptions {
  /** `-n/--namespace NAME`: overrides BERTH_NAMESPACE. */
  namespace?: string;
  /** `--trace`: print the command's trace id on stderr. */
  trace?: boolean;
}

/**
 * Takes the global options off the front of argv (`berth -n ns ps`, `--namespace=ns`), leaving the
 * command and its own arguments: after the command name, `-n` is the command's (`logs -n 10`).
 */
export function splitGlobalOptions(argv: string[]): { globals: GlobalOptions; rest: string[] } {
  const globals: GlobalOptions = {};
  let i = 0;
  while (i < argv.length) {
    const a = argv[i] as string;
    let value: string | undefined;
    if (a === '--trace') {
      globals.trace = true;
      i += 1;
      continue;
    }
    if (a === '-n' || a === '--namespace') {
      value = argv[i + 1];
      if (value === undefined) throw errors.invalid(`${a} needs a namespace name, e.g. berth ${a} k8s.io ps`);
      i += 2;
    } else if (a.startsWith('--namespace=')) {
      value = a.slice('--namespace='.length);
      i += 1;
    } else if (a.startsWith('-n') && a.length > 2) {
      value = a.slice(2);
      i += 1;
    } else {
      break;
    }
    if (!NAMESPACE_PATTERN.test(value))
      throw errors.invalid(`invalid namespace ${JSON.stringify(value)}: ${NAMESPACE_RULE}`);
    globals.namespace = value;
  }
  return { globals, rest: argv.slice(i) };
}
