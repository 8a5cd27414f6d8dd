import { errors } from '@berth/api/errors';
import type { Command } from '../command.js';
import type { CliContext } from '../context.js';

/** The span store of this host, or FAILED_PRECONDITION when it is turned off. */
async function storeOf(ctx: CliContext): Promise<string> {
  const { traceStoreDir } = await import('@berth/kit/tracing');
  const dir = traceStoreDir(ctx.config);
  if (!dir) throw errors.precondition('the span store is off (BERTH_TRACE_STORE=off): nothing to show');
  return dir;
}

/** `berth trace`: recent traces from the embedded span store, or one of them as a waterfall. */
export const traceCommands: Command[] = [
  {
    name: 'trace',
    summary: 'Show a recent trace as a waterfall (ID, --last command, --op NAME), or list recent traces',
    usage: '[ID | --last | --op NAME] [--json] [-n COUNT]',
    options: {
      last: { type: 'boolean' },
      op: { type: 'string' },
      json: { type: 'boolean' },
      count: { type: 'string', short: 'n' },
    },
    async run(args, ctx) {
      const [{ readSpans }, { groupTraces, selectTrace }, { renderTraceList, renderWaterfall }] =
        await Promise.all([import('@berth/kit/tracing'), import('./select.js'), import('./waterfall.js')]);
      const v = args.values;
      const id = args.positionals[0];
      const asked = [id !== undefined, v.last === true, typeof v.op === 'string'].filter(Boolean).length;
      if (asked > 1 || args.positionals.length > 1) {
        throw errors.invalid('berth trace: give one of ID, --last or --op NAME');
      }
      const traces = groupTraces(await readSpans(await storeOf(ctx)));
      if (asked === 0) {
        const n = v.count === undefined ? 20 : Number(v.count);
        if (!Number.isInteger(n) || n < 1)
          throw errors.invalid(`--count "${v.count}" must be a positive integer`);
        ctx.out.write(
          v.json
            ? `${JSON.stringify(traces.slice(0, n).map((t) => t.traceId))}\n`
            : renderTraceList(traces, n),
        );
        return 0;
      }
      const t = selectTrace(
        traces,
        id !== undefined ? { id } : v.last ? { last: true } : { op: String(v.op) },
      );
      ctx.out.write(v.json ? `${JSON.stringify(t.spans)}\n` : renderWaterfall(t));
      return 0;
    },
  },
];
