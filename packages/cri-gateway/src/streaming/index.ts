export { createStreamingServer, type StreamingServer } from './server.js';
export { SPDY3_DICTIONARY, SPDY3_DICTIONARY_ID } from './spdy-dictionary.js';
export {
  type AttachRequest,
  type CommandIo,
  type CommandResult,
  type ExecRequest,
  type PortForwardRequest,
  type StreamingBackend,
  type StreamingServerOptions,
  StreamKind,
  type TerminalSize,
} from './types.js';
