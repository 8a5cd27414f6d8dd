/**
 * A berth stack for the SDK's end-to-end tests: `berth up` in an isolated installation, a local
 * registry holding the test busybox image (pushed with skopeo, so examples really pull it), and a
 * runner for the programs in examples/.
 */
import { join } from 'node:path';
import { startRegistry, type TestServer } from '@berth/testing';
import { REPO_ROOT } from '../harness/berth.js';
import { type CommandOptions, type RunningCommand, startCommand } from '../harness/command.js';
import { type Stack, startStack } from '../harness/stack.js';
import { pushBusybox } from './containers-stack.js';

/** Where the examples live in the repository. */
export const EXAMPLES = join(REPO_ROOT, 'examples');

/** A running stack plus a registry with `image` in it (not yet on the node). */
export interface SdkStack {
  stack: Stack;
  registry: TestServer & { host: string };
  /** Reference of the busybox image in the registry. */
  image: string;
  /** Environment an example connects with (BERTH_NATS_URL with credentials, BERTH_NODE_ID). */
  env: NodeJS.ProcessEnv;
  stop(): Promise<void>;
}

/** Starts the stack and the registry and pushes the busybox image as `<registry>/sdk/busybox:1`. */
export async function startSdkStack(): Promise<SdkStack> {
  const stack = await startStack();
  let registry: (TestServer & { host: string }) | undefined;
  try {
    registry = await startRegistry();
    const image = `${registry.host}/sdk/busybox:1`;
    await pushBusybox(stack.root, image);
    const env: NodeJS.ProcessEnv = {
      ...stack.env,
      BERTH_NATS_URL: stack.natsUrl,
      BERTH_NODE_ID: stack.nodeId,
    };
    const reg = registry;
    return {
      stack,
      registry: reg,
      image,
      env,
      async stop() {
        await stack.stop();
        await reg.stop();
      },
    };
  } catch (err) {
    await stack.stop();
    await registry?.stop();
    throw err;
  }
}

/** Starts `node <script> ...args` in `opts.cwd`, with `opts.input` on its stdin; bounded by `timeoutMs`. */
export function startProgram(script: string, args: string[], opts: CommandOptions): RunningCommand {
  return startCommand(process.execPath, [script, ...args], opts);
}
