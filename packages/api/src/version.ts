/** berth's release version, reported by every service's info endpoint. */
export const BERTH_VERSION = '0.1.0';
