import { runtimeVersion } from '../runtime/version.js';

/** CRI VersionResponse, as on the wire. */
export interface VersionResponse {
  version: string;
  runtime_name: string;
  runtime_version: string;
  runtime_api_version: string;
}

/** RuntimeService/Version: the runtime's name and versions. The kubelet's version field is ignored. */
export async function version(): Promise<VersionResponse> {
  const v = runtimeVersion();
  return {
    version: v.version,
    runtime_name: v.runtimeName,
    runtime_version: v.runtimeVersion,
    runtime_api_version: v.runtimeApiVersion,
  };
}
