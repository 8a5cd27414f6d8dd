import { BERTH_VERSION, type CriVersionReply } from '@berth/api';

/** The name berth reports to the kubelet as its container runtime. */
export const RUNTIME_NAME = 'berth';

/** The CRI API version berth implements. */
export const RUNTIME_API_VERSION = 'v1';

/** Version of the kubelet runtime API, a fixed "0.1.0" by CRI convention (as containerd reports). */
export const KUBELET_API_VERSION = '0.1.0';

/** What berth answers to CRI Version (and to the NATS `version` operation). */
export function runtimeVersion(): CriVersionReply {
  return {
    version: KUBELET_API_VERSION,
    runtimeName: RUNTIME_NAME,
    runtimeVersion: BERTH_VERSION,
    runtimeApiVersion: RUNTIME_API_VERSION,
  };
}
