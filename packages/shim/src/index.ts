export {
  type AttachSession,
  type AttachSinks,
  attach,
  closeAttachStdin,
  resizeTerminal,
} from './attach.js';
export { type CriLogLine, parseCriLine, readCriStreams } from './cri-log.js';
export { type AgentOptions, EXIT_TOPIC, ShimAgent } from './domain/agent.js';
export { TaskControl } from './domain/control.js';
export { execPaths, taskPaths } from './domain/paths.js';
export {
  applySeccomp,
  criSeccompSection,
  DEFAULT_PROFILE,
  loadSeccompProfile,
  nodeContext,
  type OciSeccomp,
  type OciSyscall,
  parseSeccompProfile,
  resolveProfile,
  type SeccompContext,
  seccompSection,
  validateSeccompProfile,
} from './domain/seccomp/index.js';
export { cgroupVersion, statsOfPid } from './runtime/cgroups.js';
export { createHandlers } from './service.js';
