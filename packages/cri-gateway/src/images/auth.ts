import { BerthError, Code, type RegistryAuth } from '@berth/api';

/** CRI AuthConfig, as on the wire (absent strings are empty). */
export interface CriAuthConfig {
  username?: string;
  password?: string;
  auth?: string;
  server_address?: string;
  identity_token?: string;
  registry_token?: string;
}

/**
 * Turns the kubelet's AuthConfig into the credentials the image-service takes for one pull.
 * `auth` is docker's base64 "user:password" and wins over separate fields, as in containerd;
 * `server_address` is not needed: credentials apply to the reference's own registry.
 * Returns undefined when no credential is set (anonymous pull).
 */
export function registryAuthOf(a: CriAuthConfig | null | undefined, image: string): RegistryAuth | undefined {
  if (!a) return undefined;
  const out: RegistryAuth = {};
  if (a.auth) {
    const decoded = Buffer.from(a.auth, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon <= 0 || !/^[A-Za-z0-9+/=\s]+$/.test(a.auth)) {
      throw new BerthError(
        Code.INVALID_ARGUMENT,
        `pull image "${image}": auth is not base64 of "username:password"`,
      );
    }
    out.username = decoded.slice(0, colon);
    out.password = decoded.slice(colon + 1);
  } else if (a.username) {
    out.username = a.username;
    out.password = a.password ?? '';
  }
  if (a.identity_token) out.identityToken = a.identity_token;
  if (a.registry_token) out.registryToken = a.registry_token;
  return Object.keys(out).length > 0 ? out : undefined;
}
