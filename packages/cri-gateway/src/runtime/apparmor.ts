import { type AppArmorRequest, BerthError, Code, isAppArmorProfileName } from '@berth/api';
import { kernelHasAppArmor } from '@berth/kit/apparmor';
import { invalid, message } from './validate.js';

let enabled: boolean | undefined;
/** Whether this node's kernel has AppArmor on (the gateway runs on the node it answers for). */
export function appArmorEnabled(): boolean {
  enabled ??= kernelHasAppArmor();
  return enabled;
}

/**
 * The AppArmor request of a security context (a pod's or a container's), as containerd's CRI
 * reads it: the `apparmor` SecurityProfile when set (its zero value is RuntimeDefault), else the
 * deprecated `apparmor_profile` string kubelet v1.26 sends ("runtime/default", "unconfined",
 * "localhost/<name>"); nothing at all means the runtime's default profile. The node's shim
 * resolves it at task create: berth's default profile where the kernel has AppArmor, none where it
 * has not; a named profile must be loaded there. A named profile on a kernel without AppArmor is
 * refused here already (FAILED_PRECONDITION), as it would be there; unknown values are
 * INVALID_ARGUMENT.
 */
export function appArmorOf(
  sc: Record<string, unknown>,
  field: string,
  kernelHas: boolean = appArmorEnabled(),
): AppArmorRequest {
  const req = requested(sc, field);
  if (req.mode === 'localhost' && !kernelHas) {
    throw new BerthError(
      Code.FAILED_PRECONDITION,
      `${field}.apparmor: AppArmor profile "${req.name}" was asked for, but this node's kernel has no AppArmor`,
    );
  }
  return req;
}

function requested(sc: Record<string, unknown>, field: string): AppArmorRequest {
  const p = message(sc.apparmor, `${field}.apparmor`);
  if (p) {
    const type = p.profile_type ?? 'RuntimeDefault';
    if (type === 'RuntimeDefault') return { mode: 'default' };
    if (type === 'Unconfined') return { mode: 'unconfined' };
    if (type !== 'Localhost') {
      throw invalid(`${field}.apparmor.profile_type`, `is unknown: ${String(type)}`);
    }
    return localhost(
      typeof p.localhost_ref === 'string' ? p.localhost_ref : '',
      `${field}.apparmor.localhost_ref`,
    );
  }
  const legacy = typeof sc.apparmor_profile === 'string' ? sc.apparmor_profile : '';
  if (legacy === '' || legacy === 'runtime/default') return { mode: 'default' };
  if (legacy === 'unconfined') return { mode: 'unconfined' };
  if (legacy.startsWith('localhost/')) {
    return localhost(legacy.slice('localhost/'.length), `${field}.apparmor_profile`);
  }
  throw invalid(`${field}.apparmor_profile`, `unknown AppArmor profile "${legacy}"`);
}

function localhost(name: string, field: string): AppArmorRequest {
  if (name === '') throw invalid(field, 'must name an AppArmor profile');
  if (!isAppArmorProfileName(name))
    throw invalid(field, `is not an AppArmor profile name: ${JSON.stringify(name)}`);
  return { mode: 'localhost', name };
}
