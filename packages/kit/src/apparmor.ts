import { readFileSync } from 'node:fs';

// Whether the node's kernel has AppArmor: the gateway's early check of a CRI request and the
// shim's resolving of a task's profile ask the same file.

/** Where the kernel says whether AppArmor is on ("Y"). */
export const APPARMOR_ENABLED_FILE = '/sys/module/apparmor/parameters/enabled';

/** Whether this machine's kernel has AppArmor on, read from `file` (APPARMOR_ENABLED_FILE). */
export function kernelHasAppArmor(file: string = APPARMOR_ENABLED_FILE): boolean {
  try {
    return readFileSync(file, 'utf8').trim() === 'Y';
  } catch {
    return false;
  }
}
