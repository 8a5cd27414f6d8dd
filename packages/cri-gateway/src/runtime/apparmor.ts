import { readFileSync } from 'node:fs';
import { BerthError, Code } from '@berth/api';
import { invalid, message } from './validate.js';

let enabled: boolean | undefined;
/** Whether this node's kernel has AppArmor on (the gateway runs on the node it answers for). */
function appArmorEnabled(): boolean {
  if (enabled === undefined) {
    try {
      enabled = readFileSync('/sys/module/apparmor/parameters/enabled', 'utf8').trim() === 'Y';
    } catch {
      enabled = false;
    }
  }
  return enabled;
}

/**
 * Checks a security context's AppArmor request. berth applies no AppArmor profile: RuntimeDefault
 * and Unconfined ask for nothing a kernel without AppArmor could give (as containerd treats them
 * there), but a named profile must not be silently dropped: FAILED_PRECONDITION where the kernel
 * has no AppArmor, UNIMPLEMENTED where it has one.
 */
export function checkAppArmor(sc: Record<string, unknown>, field: string): void {
  const p = message(sc.apparmor, `${field}.apparmor`);
  const legacy = typeof sc.apparmor_profile === 'string' ? sc.apparmor_profile : '';
  let named = '';
  if (p) {
    if (p.profile_type === 'Localhost') named = typeof p.localhost_ref === 'string' ? p.localhost_ref : '';
  } else if (legacy.startsWith('localhost/')) {
    named = legacy.slice('localhost/'.length);
  } else if (legacy !== '' && legacy !== 'runtime/default' && legacy !== 'unconfined') {
    throw invalid(`${field}.apparmor_profile`, `unknown AppArmor profile "${legacy}"`);
  }
  if (!named) return;
  if (!appArmorEnabled()) {
    throw new BerthError(
      Code.FAILED_PRECONDITION,
      `${field}.apparmor: AppArmor profile "${named}" was asked for, but this node's kernel has no AppArmor`,
    );
  }
  throw new BerthError(
    Code.UNIMPLEMENTED,
    `CRI ${field}.apparmor: AppArmor profiles are not applied by berth yet`,
  );
}
