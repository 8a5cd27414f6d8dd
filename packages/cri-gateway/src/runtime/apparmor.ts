import { readFileSync } from 'node:fs';
import { BerthError, Code } from '@berth/api';
import { invalid, message } from './validate.js';

let enabled: boolean | undefined;
/** Whether this node's kernel has AppArmor on (the gateway runs on the node it answers for). */
export function appArmorEnabled(): boolean {
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
 * Checks a security context's AppArmor request (a pod's or a container's). berth applies no
 * AppArmor profile. Where the kernel has no AppArmor, RuntimeDefault and Unconfined ask for
 * nothing it could give (containerd treats them so there) and a named profile is
 * FAILED_PRECONDITION. Where it has AppArmor, containerd would confine the process with its
 * default profile: a request for one (RuntimeDefault, or a named profile) is UNIMPLEMENTED rather
 * than a process left unconfined; Unconfined, or no request, runs unconfined.
 */
export function checkAppArmor(
  sc: Record<string, unknown>,
  field: string,
  kernelHasAppArmor: boolean = appArmorEnabled(),
): void {
  const p = message(sc.apparmor, `${field}.apparmor`);
  const legacy = typeof sc.apparmor_profile === 'string' ? sc.apparmor_profile : '';
  let named = '';
  let runtimeDefault = false;
  if (p) {
    if (p.profile_type === 'Localhost') named = typeof p.localhost_ref === 'string' ? p.localhost_ref : '';
    runtimeDefault = (p.profile_type ?? 'RuntimeDefault') === 'RuntimeDefault';
  } else if (legacy.startsWith('localhost/')) {
    named = legacy.slice('localhost/'.length);
  } else if (legacy === 'runtime/default') {
    runtimeDefault = true;
  } else if (legacy !== '' && legacy !== 'unconfined') {
    throw invalid(`${field}.apparmor_profile`, `unknown AppArmor profile "${legacy}"`);
  }
  if (!named && !(runtimeDefault && kernelHasAppArmor)) return;
  if (!kernelHasAppArmor) {
    throw new BerthError(
      Code.FAILED_PRECONDITION,
      `${field}.apparmor: AppArmor profile "${named}" was asked for, but this node's kernel has no AppArmor`,
    );
  }
  throw new BerthError(
    Code.UNIMPLEMENTED,
    `CRI ${field}.apparmor: AppArmor profile "${named || 'RuntimeDefault'}" asked for, but berth applies no AppArmor profiles yet`,
  );
}
