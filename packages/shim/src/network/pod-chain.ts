import type { PortMapping } from './cni.js';
import type { CniConfList } from './cni-config.js';
import { BERTH_MARK } from './default-config.js';

/**
 * The chain one pod's ADD runs, recorded so its DEL and CHECK run the same: the network's list,
 * less its `portmap` plugin when the list is berth's own default network (it bears berth's mark)
 * and the pod publishes no port.
 *
 * Why leaving it out changes nothing but time: the reference portmap plugin receives the mappings
 * only through the `portMappings` capability, and with none its ADD prints the previous result
 * unchanged (converted to the list's cniVersion, which the bridge's result already has), its DEL
 * and CHECK return at once; it runs no iptables command either way (one Go process start, 5-15 ms,
 * at ADD and again at DEL). A pod whose ADD did run portmap keeps it in its recorded chain, so its
 * DEL runs it too. A list the user wrote runs whole, as containerd (go-cni) and CRI-O (ocicni) run
 * every list: there berth cannot know what the plugin named portmap does.
 */
export function podChain(list: CniConfList, portMappings: readonly PortMapping[]): CniConfList {
  if (portMappings.length > 0 || !isBerthDefault(list)) return list;
  const plugins = list.plugins.filter((p) => !onlyMapsPorts(p));
  return plugins.length === list.plugins.length || plugins.length === 0 ? list : { ...list, plugins };
}

/** True for berth's own default network: the conflist berth wrote, with its mark. */
function isBerthDefault(list: CniConfList): boolean {
  const mark = (list as Record<string, unknown>)[BERTH_MARK];
  return typeof mark === 'object' && mark !== null;
}

/** The portmap plugin with no capability but `portMappings` (nothing else it would receive). */
function onlyMapsPorts(plugin: CniConfList['plugins'][number]): boolean {
  if (plugin.type !== 'portmap') return false;
  return Object.entries(plugin.capabilities ?? {}).every(([k, on]) => k === 'portMappings' || !on);
}
