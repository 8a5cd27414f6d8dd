import { errors } from '@berth/api/errors';
import type { Command, CommandArgs } from '../command.js';
import type { CliContext } from '../context.js';

// The image commands' modules load when one of them runs, not for every `berth` invocation.
const impl = () => import('../images/commands.js');
const logins = () => import('../images/login.js');
type Impl = Awaited<ReturnType<typeof impl>>;
/** A command of images/commands.ts, loaded when it runs. */
const lazy =
  <K extends keyof Impl>(name: K) =>
  async (args: CommandArgs, ctx: CliContext): Promise<number> =>
    ((await impl())[name] as (a: CommandArgs, c: CliContext) => Promise<number>)(args, ctx);

const pull: Omit<Command, 'name'> = {
  summary: 'Pull an image from a registry into this node (and unpack it)',
  usage: '[--platform OS/ARCH[/VARIANT]] [--no-unpack] [-q] NAME[:TAG|@DIGEST]',
  options: {
    platform: { type: 'string' },
    'no-unpack': { type: 'boolean' },
    quiet: { type: 'boolean', short: 'q' },
  },
  run: lazy('pullCommand'),
};
const images: Omit<Command, 'name'> = {
  summary: 'List images',
  usage:
    '[-q] [--digests] [--no-trunc] [--filter reference=PATTERN|label=KEY[=VALUE]|dangling=true|false|before=IMAGE|since=IMAGE] [--node NAME] [REPOSITORY[:TAG]]',
  options: {
    quiet: { type: 'boolean', short: 'q' },
    node: { type: 'string' },
    digests: { type: 'boolean' },
    'no-trunc': { type: 'boolean' },
    filter: { type: 'string', short: 'f', multiple: true },
  },
  run: lazy('imagesCommand'),
};
const rmi: Omit<Command, 'name'> = {
  summary: 'Remove images (refused while a container uses one, unless -f), then collect unused content',
  usage: '[-f] IMAGE [IMAGE...]',
  options: { force: { type: 'boolean', short: 'f' } },
  run: lazy('rmiCommand'),
};
const tag: Omit<Command, 'name'> = {
  summary: 'Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE',
  usage: 'SOURCE_IMAGE TARGET_IMAGE',
  run: lazy('tagCommand'),
};
const push: Omit<Command, 'name'> = {
  summary: 'Push an image to a registry (only missing blobs; cross-repository mounts when possible)',
  usage: '[-q] NAME[:TAG] [DESTINATION]',
  options: { quiet: { type: 'boolean', short: 'q' } },
  run: lazy('pushCommand'),
};
const load: Omit<Command, 'name'> = {
  summary: 'Load images from an OCI image-layout or docker-save tar archive (a file, or stdin)',
  usage: '[-i FILE] [--name NAME] [--no-unpack]',
  options: {
    input: { type: 'string', short: 'i' },
    name: { type: 'string' },
    'no-unpack': { type: 'boolean' },
  },
  run: lazy('loadCommand'),
};
const save: Omit<Command, 'name'> = {
  summary: 'Save images to an OCI image-layout tar archive, to a file or stdout (docker and skopeo read it)',
  usage: '[-o FILE] IMAGE [IMAGE...]',
  options: { output: { type: 'string', short: 'o' } },
  run: lazy('saveCommand'),
};
const inspect: Omit<Command, 'name'> = {
  summary: 'Show image records as JSON',
  usage: 'IMAGE [IMAGE...]',
  run: lazy('inspectCommand'),
};

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks)
    .toString('utf8')
    .replace(/\r?\n$/, '');
}

/** The images commands of the CLI (docker/nerdctl conventions). */
export const imagesCommands: Command[] = [
  { name: 'pull', ...pull },
  { name: 'image pull', ...pull },
  { name: 'images', ...images },
  { name: 'image ls', ...images },
  { name: 'rmi', ...rmi },
  { name: 'image rm', ...rmi },
  { name: 'tag', ...tag },
  { name: 'image tag', ...tag },
  { name: 'push', ...push },
  { name: 'image push', ...push },
  { name: 'load', ...load },
  { name: 'image load', ...load },
  { name: 'save', ...save },
  { name: 'image save', ...save },
  { name: 'image inspect', ...inspect },
  {
    name: 'login',
    summary:
      'Log in to a registry (credentials are checked, then stored in the docker config.json, mode 0600)',
    usage: '[-u USER] [-p PASSWORD | --password-stdin] [SERVER]',
    options: {
      username: { type: 'string', short: 'u' },
      password: { type: 'string', short: 'p' },
      'password-stdin': { type: 'boolean' },
    },
    run: async (args, ctx) => {
      const user = typeof args.values.username === 'string' ? args.values.username : undefined;
      let pass = typeof args.values.password === 'string' ? args.values.password : undefined;
      if (args.values['password-stdin'] === true) pass = await readStdin();
      if (!user || pass === undefined)
        throw errors.invalid('berth login: -u USER and -p PASSWORD (or --password-stdin) are required');
      await (await logins()).login(ctx, args.positionals[0], user, pass);
      ctx.out.write('Login Succeeded\n');
      return 0;
    },
  },
  {
    name: 'logout',
    summary: 'Remove stored credentials of a registry',
    usage: '[SERVER]',
    run: async (args, ctx) => {
      const { logout, serverHost } = await logins();
      const host = serverHost(args.positionals[0]);
      const removed = await logout(args.positionals[0]);
      ctx.out.write(removed ? `Removing login credentials for ${host}\n` : `Not logged in to ${host}\n`);
      return 0;
    },
  },
];
