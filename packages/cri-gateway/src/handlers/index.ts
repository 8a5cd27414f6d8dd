import { runtimeConfig } from './runtime-config.js';
import { status } from './status.js';
import type { UnaryHandler } from './types.js';
import { version } from './version.js';

export type { HandlerDeps, UnaryHandler } from './types.js';

/**
 * The CRI RPCs berth implements, by "<Service>/<Method>". Every RPC not listed here answers
 * UNIMPLEMENTED naming itself.
 */
export const implemented: Readonly<Record<string, UnaryHandler>> = {
  'RuntimeService/Version': version,
  'RuntimeService/Status': status,
  'RuntimeService/RuntimeConfig': runtimeConfig,
};
