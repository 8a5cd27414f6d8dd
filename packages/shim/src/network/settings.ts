import { type Config, serviceSetting } from '@berth/kit';
import { z } from 'zod';
import { parseCidr4 } from './default-config.js';
import type { NetworkOptions } from './manager.js';

/**
 * The network options of the shim from its config (`services.shim.cni*`, documented in
 * packages/shim/README.md); each key is validated, a bad one is INVALID_ARGUMENT naming it.
 */
export function networkSettings(config: Config): Omit<NetworkOptions, 'layout'> {
  const s = <T>(key: string, schema: z.ZodType<T>, dflt: T) =>
    serviceSetting(config, 'shim', key, schema, dflt);
  const abs = z.string().startsWith('/');
  const subnet = s('cniSubnet', z.string().optional(), undefined);
  if (subnet) parseCidr4(subnet, 'config "services.shim.cniSubnet"');
  const dataDir = s('cniDataDir', abs.optional(), undefined);
  return {
    confDir: s('cniConfDir', abs, '/etc/cni/net.d'),
    pluginDirs: s('cniPluginDirs', z.array(abs).min(1), ['/usr/lib/cni', '/opt/cni/bin']),
    installDefault: s('cniInstallDefault', z.boolean(), true),
    pluginTimeoutMs: s('cniPluginTimeoutMs', z.number().int().min(100), 60_000),
    defaults: {
      name: s('cniNetwork', z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]*$/), 'berth'),
      bridge: s('cniBridge', z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$/), 'berth0'),
      ...(subnet ? { subnet } : {}),
      ...(dataDir ? { dataDir } : {}),
    },
  };
}
