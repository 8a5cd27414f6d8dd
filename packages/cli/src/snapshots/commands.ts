import type { SnapshotInfo } from '@berth/api';
import { BerthError, errors } from '@berth/api/errors';
import type { Command } from '../command.js';
import { table } from '../containers/format.js';
import type { CliContext } from '../context.js';
import { humanSize } from '../format.js';

// The NATS calls and the mount code load when a command runs, not for every `berth` invocation.
const api = () => import('./api.js');
const mounts = () => import('./mount.js');

async function forEach(
  keys: string[],
  ctx: CliContext,
  what: string,
  fn: (k: string) => Promise<void>,
): Promise<number> {
  if (keys.length === 0) throw errors.invalid(`${what}: at least one snapshot key is required`);
  let failed = 0;
  for (const k of keys) {
    try {
      await fn(k);
      ctx.out.write(`${k}\n`);
    } catch (err) {
      failed++;
      ctx.err.write(`berth: ${(err as Error).message}\n`);
    }
  }
  return failed === 0 ? 0 : 1;
}

/** `berth snapshot ...`, `berth mount`, `berth unmount`, `berth image unpack`. */
export const snapshotCommandList: Command[] = [
  {
    name: 'snapshot ls',
    summary: 'List snapshots (containerd filters: --filter kind==committed --filter labels.x==y)',
    usage: '[--filter FILTER]... [-q]',
    options: {
      filter: { type: 'string', short: 'f', multiple: true },
      quiet: { type: 'boolean', short: 'q' },
    },
    run: async (args, ctx) => {
      const filters = (args.values.filter as string[] | undefined) ?? [];
      const snapshots = await (await api()).listSnapshots(ctx, filters);
      if (args.values.quiet === true) {
        ctx.out.write(snapshots.map((s) => `${s.name}\n`).join(''));
        return 0;
      }
      ctx.out.write(
        table([
          ['KEY', 'PARENT', 'KIND'],
          ...snapshots.map((s: SnapshotInfo) => [s.name, s.parent ?? '', s.kind]),
        ]),
      );
      return 0;
    },
  },
  {
    name: 'snapshot info',
    summary: 'Print a snapshot (name, parent, kind, labels, times) as JSON',
    usage: 'KEY',
    run: async (args, ctx) => {
      const [key] = args.positionals;
      if (!key || args.positionals.length > 1) throw errors.invalid('usage: berth snapshot info KEY');
      ctx.out.write(`${JSON.stringify(await (await api()).statSnapshot(ctx, key), null, 2)}\n`);
      return 0;
    },
  },
  {
    name: 'snapshot usage',
    summary: 'Disk usage of snapshots, each without its parents (all snapshots when no KEY)',
    usage: '[KEY...]',
    run: async (args, ctx) => {
      const keys =
        args.positionals.length > 0
          ? args.positionals
          : (await (await api()).listSnapshots(ctx, [])).map((s) => s.name);
      const rows = [['KEY', 'SIZE', 'INODES']];
      for (const k of keys) {
        const u = await (await api()).snapshotUsage(ctx, k);
        rows.push([k, humanSize(u.size), String(u.inodes)]);
      }
      ctx.out.write(table(rows));
      return 0;
    },
  },
  {
    name: 'snapshot rm',
    summary: 'Remove snapshots (refused while a snapshot has children)',
    usage: 'KEY [KEY...]',
    run: (args, ctx) =>
      forEach(args.positionals, ctx, 'snapshot rm', async (key) => {
        await (await api()).snap(ctx, 'remove', { key });
      }),
  },
  {
    name: 'snapshot mounts',
    summary: 'Print the mount commands that mount an active or view snapshot on TARGET',
    usage: 'KEY [TARGET]',
    run: async (args, ctx) => {
      const [key, target = '/tmp/target'] = args.positionals;
      if (!key || args.positionals.length > 2)
        throw errors.invalid('usage: berth snapshot mounts KEY [TARGET]');
      const [list, { mountArgs }] = await Promise.all([(await api()).snapshotMounts(ctx, key), mounts()]);
      ctx.out.write(list.mounts.map((m) => `mount ${mountArgs(m, target).join(' ')}\n`).join(''));
      return 0;
    },
  },
  {
    name: 'mount',
    summary: "Mount an image's root filesystem read-only on DIR (like ctr image mount)",
    usage: 'IMAGE DIR',
    run: async (args, ctx) => {
      const [ref, dir] = args.positionals;
      if (!ref || !dir || args.positionals.length > 2) throw errors.invalid('usage: berth mount IMAGE DIR');
      ctx.out.write(`${await (await mounts()).mountImage(ctx, ref, dir)}\n`);
      return 0;
    },
  },
  {
    name: 'unmount',
    summary: 'Unmount a directory mounted by berth mount and release its snapshot',
    usage: 'DIR',
    run: async (args, ctx) => {
      const [dir] = args.positionals;
      if (!dir || args.positionals.length > 1) throw errors.invalid('usage: berth unmount DIR');
      ctx.out.write(`${await (await mounts()).unmountImage(ctx, dir)}\n`);
      return 0;
    },
  },
  {
    name: 'image unpack',
    summary: "Unpack an image's layers into snapshots on this node (pull does this unless --no-unpack)",
    usage: 'IMAGE',
    run: async (args, ctx) => {
      const [ref] = args.positionals;
      if (!ref || args.positionals.length > 1) throw errors.invalid('usage: berth image unpack IMAGE');
      const r = await (await api()).unpackImage(ctx, ref).catch((err: unknown) => {
        if (err instanceof BerthError)
          throw new BerthError(err.code, `unpack of image "${ref}": ${err.message}`);
        throw err;
      });
      ctx.out.write(
        `${r.image.name}: ${r.image.chainId} (${r.applied} layer(s) applied, ${r.skipped} already unpacked)\n`,
      );
      return 0;
    },
  },
];
