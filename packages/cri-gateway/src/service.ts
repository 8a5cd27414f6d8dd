import type { CriApi } from '@berth/api';
import type { Handlers } from '@berth/kit';
import { runtimeVersion } from './runtime/version.js';

/** The handlers of the cri-gateway's NATS operations (CriApi; `info` is the kit's). */
export function createHandlers(): Handlers<typeof CriApi> {
  return { version: async () => runtimeVersion() };
}
