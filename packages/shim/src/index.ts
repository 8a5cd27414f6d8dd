export {
  type AttachSession,
  type AttachSinks,
  attach,
  closeAttachStdin,
  resizeTerminal,
} from './attach.js';
export { type CriLogLine, type CriOutput, parseCriLine, readCriOutput, readCriStreams } from './cri-log.js';
export { type AgentOptions, EXIT_TOPIC, ShimAgent } from './domain/agent.js';
export { defaultProfileText, NodeAppArmor, type NodeAppArmorOptions } from './domain/apparmor/index.js';
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
export { listNetworks, type NetworkInfo } from './network/choice.js';
export type { AttachmentInfo, PodIp, PortMapping } from './network/cni.js';
export type { CniConfList } from './network/cni-config.js';
export {
  BERTH_MARK,
  berthMark,
  DEFAULT_CONFLIST,
  type DefaultNetworkOptions,
  ensureDefaultNetwork,
} from './network/default-config.js';
export {
  NetworkManager,
  type NetworkOptions,
  type PodNetwork,
  type RecoveryReport,
  type SetupOptions,
} from './network/manager.js';
export { createNetns, isNetnsMounted, removeNetns } from './network/netns.js';
export { networkSettings } from './network/settings.js';
export { networkPaths } from './network/state.js';
export { berthMasqRules, removeSubnetRule } from './network/subnet-masq.js';
export { cgroupVersion, statsOfPid } from './runtime/cgroups.js';
export { type ConmonOptions, conmonArgs } from './runtime/conmon.js';
export { createHandlers } from './service.js';
