import { randomUUID } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import {
  BerthError,
  Code,
  errors,
  type ImageRecord,
  type ListImagesRequest,
  pullProgressTopic,
  pushProgressTopic,
} from '@berth/api';
import { collectAll } from '@berth/kit/paging';
import type { CommandArgs } from '../command.js';
import type { CliContext } from '../context.js';
import { humanSize } from '../format.js';
import { nodeFlag } from '../nodes.js';
import { absolute, authFor, image, SILENCE_MS, withProgress } from './api.js';
import { pullStatus } from './pull-status.js';

/** BERTH_PROGRESS_SILENCE_MS shortens the dead-service detection (tests). */
const silenceMs = () => Number(process.env.BERTH_PROGRESS_SILENCE_MS) || SILENCE_MS;

const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);

/** `berth pull`: progress while it runs, the digest at the end; non-zero when unpack failed. */
export async function pullCommand(args: CommandArgs, ctx: CliContext): Promise<number> {
  const [ref, ...extra] = args.positionals;
  if (!ref || extra.length > 0) throw errors.invalid('usage: berth pull [OPTIONS] NAME[:TAG|@DIGEST]');
  const pullId = randomUUID().replace(/-/g, '');
  const quiet = args.values.quiet === true;
  const platform = str(args.values.platform);
  const auth = await authFor(ref);
  const reply = await withProgress(
    ctx,
    pullProgressTopic(pullId),
    quiet,
    { done: 'Pull complete' },
    () =>
      image(ctx, 'pull', {
        ref,
        pullId,
        ...(platform ? { platform } : {}),
        ...(args.values['no-unpack'] === true ? { unpack: false } : {}),
        ...(auth ? { auth } : {}),
      }),
    `pull of "${ref}"`,
    silenceMs(),
  );
  if (quiet) ctx.out.write(`${reply.image.name}\n`);
  else {
    ctx.out.write(`Digest: ${reply.image.target.digest}\n`);
    ctx.out.write(`${pullStatus(reply)}\n`);
  }
  if (reply.unpack === 'failed') {
    ctx.err.write(
      `berth: ${reply.unpackError ?? `unpack of "${reply.image.name}" failed`} (the image is stored; retry with 'berth pull')\n`,
    );
    return 1;
  }
  return 0;
}

/** `berth push`. */
export async function pushCommand(args: CommandArgs, ctx: CliContext): Promise<number> {
  const [name, dest, ...extra] = args.positionals;
  if (!name || extra.length > 0) throw errors.invalid('usage: berth push [OPTIONS] NAME[:TAG] [DESTINATION]');
  const pushId = randomUUID().replace(/-/g, '');
  const auth = await authFor(dest ?? name);
  const quiet = args.values.quiet === true;
  const r = await withProgress(
    ctx,
    pushProgressTopic(pushId),
    quiet,
    { done: 'Pushed', transfer: 'Pushing' },
    () => image(ctx, 'push', { name, pushId, ...(dest ? { ref: dest } : {}), ...(auth ? { auth } : {}) }),
    `push of "${dest ?? name}"`,
    silenceMs(),
  );
  ctx.out.write(
    quiet
      ? `${r.ref}@${r.digest}\n`
      : `${r.ref}: digest: ${r.digest} (${r.uploaded} uploaded, ${r.mounted} mounted, ${r.existing} already present)\n`,
  );
  return 0;
}

/** Splits a normalized name into repository, tag and digest columns, docker style. */
function columns(rec: ImageRecord): { repo: string; tag: string } {
  const name = rec.name.replace(/^docker\.io\/library\//, '').replace(/^docker\.io\//, '');
  const at = name.indexOf('@');
  const base = at >= 0 ? name.slice(0, at) : name;
  const colon = base.lastIndexOf(':');
  if (colon > base.lastIndexOf('/')) return { repo: base.slice(0, colon), tag: base.slice(colon + 1) };
  return { repo: base, tag: '<none>' };
}

function ago(iso: string | undefined): string {
  const t = iso ? Date.parse(iso) : Number.NaN;
  if (Number.isNaN(t)) return 'N/A';
  const s = Math.max(0, (Date.now() - t) / 1000);
  const units: [number, string][] = [
    [365 * 86400, 'year'],
    [30 * 86400, 'month'],
    [7 * 86400, 'week'],
    [86400, 'day'],
    [3600, 'hour'],
    [60, 'minute'],
  ];
  for (const [sec, name] of units) {
    const n = Math.floor(s / sec);
    if (n >= 1) return `${n} ${name}${n > 1 ? 's' : ''} ago`;
  }
  return 'Less than a minute ago';
}

/** `berth images`. */
export async function imagesCommand(args: CommandArgs, ctx: CliContext): Promise<number> {
  const filters = ([] as unknown[])
    .concat(args.values.filter ?? [])
    .filter((f): f is string => typeof f === 'string');
  if (args.positionals[0]) filters.push(`reference=${args.positionals[0]}`);
  const node = nodeFlag(ctx.config.nodeId, args.values.node);
  const page = (input: ListImagesRequest) => image(ctx, 'list', input, node);
  const images = await collectAll(page, { filters }, 'images');
  const noTrunc = args.values['no-trunc'] === true;
  const id = (r: ImageRecord) => (noTrunc ? r.configDigest : r.configDigest.slice(7, 19));
  if (args.values.quiet === true) {
    ctx.out.write([...new Set(images.map(id))].map((i) => `${i}\n`).join(''));
    return 0;
  }
  const digests = args.values.digests === true;
  const head = ['REPOSITORY', 'TAG', ...(digests ? ['DIGEST'] : []), 'IMAGE ID', 'CREATED', 'SIZE'];
  const rows = images.map((r) => {
    const c = columns(r);
    return [
      c.repo,
      c.tag,
      ...(digests ? [r.target.digest] : []),
      id(r),
      ago(r.config.created ?? r.createdAt),
      humanSize(r.size),
    ];
  });
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((row) => (row[i] ?? '').length)));
  const line = (cells: string[]) =>
    `${cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0))).join('   ')}\n`;
  ctx.out.write(line(head) + rows.map(line).join(''));
  return 0;
}

/** `berth rmi`: each name on its own; failures are reported and make the exit non-zero. */
export async function rmiCommand(args: CommandArgs, ctx: CliContext): Promise<number> {
  if (args.positionals.length === 0) throw errors.invalid('usage: berth rmi [-f] IMAGE [IMAGE...]');
  let failed: BerthError | undefined;
  for (const name of args.positionals) {
    try {
      const r = await image(ctx, 'remove', { name, force: args.values.force === true });
      for (const n of r.removed) ctx.out.write(`Untagged: ${n}\n`);
      if (r.gc && r.gc.removedBlobs > 0)
        ctx.out.write(`Deleted: ${r.gc.removedBlobs} blobs (${humanSize(r.gc.freedBytes)})\n`);
    } catch (err) {
      if (!(err instanceof BerthError) || args.positionals.length === 1) throw err;
      ctx.err.write(`berth: ${err.message}\n`);
      failed = err;
    }
  }
  if (failed)
    throw new BerthError(
      failed.code,
      `${args.positionals.length > 1 ? 'some images were not removed' : failed.message}`,
    );
  return 0;
}

/** `berth tag`. */
export async function tagCommand(args: CommandArgs, ctx: CliContext): Promise<number> {
  const [source, target, ...extra] = args.positionals;
  if (!source || !target || extra.length > 0)
    throw errors.invalid('usage: berth tag SOURCE_IMAGE TARGET_IMAGE');
  await image(ctx, 'tag', { source, target });
  return 0;
}

/**
 * A temp directory for archives passed between the CLI and the (host-local, same-host)
 * image-service when the user streams through stdin or stdout; removed afterwards.
 */
async function withTempDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  // Loaded here: node:fs/promises costs `berth images` (this module) ~5 ms to load.
  const { mkdtemp, rm } = await import('node:fs/promises');
  const dir = await mkdtemp(join(tmpdir(), 'berth-archive-'));
  try {
    return await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** `berth load [-i FILE]`: without -i the archive comes on stdin (spooled to a temp file). */
export async function loadCommand(args: CommandArgs, ctx: CliContext): Promise<number> {
  const input = str(args.values.input);
  const name = str(args.values.name);
  const run = (path: string) =>
    image(ctx, 'import', {
      path,
      ...(name ? { name } : {}),
      ...(args.values['no-unpack'] === true ? { unpack: false } : {}),
    });
  let r: Awaited<ReturnType<typeof run>>;
  if (input) r = await run(absolute(input));
  else {
    if (process.stdin.isTTY) {
      throw new BerthError(Code.INVALID_ARGUMENT, 'berth load: give -i FILE or pipe an archive to stdin');
    }
    r = await withTempDir(async (dir) => {
      const file = join(dir, 'in.tar');
      await pipeline(process.stdin, createWriteStream(file, { mode: 0o600 }));
      return run(file);
    });
  }
  for (const i of r.images) ctx.out.write(`Loaded image: ${i.name}\n`);
  return 0;
}

/** `berth save [-o FILE] IMAGE...`: without -o the archive goes to stdout (never to a terminal). */
export async function saveCommand(args: CommandArgs, ctx: CliContext): Promise<number> {
  const output = str(args.values.output);
  if (args.positionals.length === 0) throw errors.invalid('usage: berth save [-o FILE] IMAGE [IMAGE...]');
  if (output) {
    await image(ctx, 'export', { names: args.positionals, path: absolute(output) });
    return 0;
  }
  if (ctx.out.isTTY) {
    throw new BerthError(
      Code.INVALID_ARGUMENT,
      'berth save: refusing to write an archive to a terminal; use -o FILE or redirect',
    );
  }
  await withTempDir(async (dir) => {
    const file = join(dir, 'out.tar');
    await image(ctx, 'export', { names: args.positionals, path: file });
    await pipeline(createReadStream(file), ctx.out, { end: false });
  });
  return 0;
}

/**
 * `berth image inspect`: the records as a JSON array. As docker: with several names, the ones
 * found are printed and each one that is not gets a line on stderr and a non-zero exit.
 */
export async function inspectCommand(args: CommandArgs, ctx: CliContext): Promise<number> {
  if (args.positionals.length === 0) throw errors.invalid('usage: berth image inspect IMAGE [IMAGE...]');
  const out: ImageRecord[] = [];
  const failures: string[] = [];
  for (const name of args.positionals) {
    try {
      out.push(await image(ctx, 'get', { name }));
    } catch (err) {
      if (!(err instanceof BerthError) || args.positionals.length === 1) throw err;
      failures.push(err.message);
    }
  }
  ctx.out.write(`${JSON.stringify(out, null, 2)}\n`);
  for (const f of failures) ctx.err.write(`berth: ${f}\n`);
  return failures.length === 0 ? 0 : 1;
}
