// Contracts of AppArmor: the profile a container asks for. The node's shim, which can see the
// node's kernel and load profiles into it, turns it into the OCI `process.apparmorProfile`.

import * as z from './lazy-zod.js';

/** The name of berth's default AppArmor profile, as the node's shim loads it. */
export const APPARMOR_DEFAULT_PROFILE = 'berth-default';

/**
 * True when `name` could be a loaded profile's: no whitespace or control characters (the kernel
 * lists profiles by name, one per line).
 */
export function isAppArmorProfileName(name: string): boolean {
  for (const ch of name) {
    const c = ch.codePointAt(0) ?? 0;
    if (c <= 0x20 || c === 0x7f) return false;
  }
  return true;
}

/**
 * The AppArmor profile a container is created with, resolved by its node's shim. `default`:
 * berth's default profile (`berth-default`, loaded by the shim when needed) where the node's
 * kernel has AppArmor, none where it has not; `unconfined`: none; `localhost`: a profile already
 * loaded on the node, by name (an error where it is not loaded, or the kernel has no AppArmor).
 */
export const AppArmorRequest = z.discriminatedUnion('mode', [
  z.object({ mode: z.literal('default') }),
  z.object({ mode: z.literal('unconfined') }),
  z.object({
    mode: z.literal('localhost'),
    name: z
      .string()
      .min(1, 'an AppArmor profile name must not be empty')
      .max(1024)
      .refine(isAppArmorProfileName, 'an AppArmor profile name has no whitespace or control characters'),
  }),
]);
export type AppArmorRequest = z.infer<typeof AppArmorRequest>;

/**
 * The profile a container runs with when it asked for `asked` (none: berth's default): a
 * privileged container gets no default profile, though a profile it names still applies, as
 * Docker and containerd's CRI do.
 */
export function effectiveAppArmor(asked: AppArmorRequest | undefined, privileged: boolean): AppArmorRequest {
  const req = asked ?? { mode: 'default' };
  return privileged && req.mode === 'default' ? { mode: 'unconfined' } : req;
}
