/** CRI RuntimeConfigResponse, as on the wire. */
export interface RuntimeConfigResponse {
  linux: { cgroup_driver: 'SYSTEMD' | 'CGROUPFS' };
}

/**
 * RuntimeService/RuntimeConfig: the cgroup driver. berth drives runc with its default cgroupfs
 * manager and plain cgroup paths (/berth/<namespace>/<id>), so the kubelet must use cgroupfs too.
 */
export async function runtimeConfig(): Promise<RuntimeConfigResponse> {
  return { linux: { cgroup_driver: 'CGROUPFS' } };
}
