import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { cniGatePlugin, cniRecorder, type TestCniNetwork } from '@berth/testing';

/**
 * Installs a test CNI chain into a stack's private CNI conf dir: the stack's own bridge network
 * followed by a "gate" plugin, a Node script whose ADD runs `addBody` (with `fs`, the parsed
 * `conf` and its `prevResult` in scope; it must write a result or exit), whose DEL runs `o.del`
 * when one is given, and whose other commands succeed at once; `o.capabilities` are the gate's
 * (its runtimeConfig carries them). Tests hold a pod in the middle of its CNI ADD with it (after
 * the bridge leased an address), fail its DEL, or note what it was called with. Returns the shim
 * settings that put the gate's folder before Debian's plugins.
 */
export async function installGateNetwork(
  root: string,
  cni: TestCniNetwork,
  addBody: string,
  o: { del?: string; capabilities?: Record<string, boolean> } = {},
): Promise<Record<string, unknown>> {
  const plugins = join(root, 'cni-plugins');
  await mkdir(plugins, { recursive: true });
  const gate = cniGatePlugin(addBody, o.del);
  await writeFile(join(plugins, 'gate'), gate);
  await chmod(join(plugins, 'gate'), 0o755);
  const ipam = { type: 'host-local', dataDir: cni.settings.cniDataDir, ranges: [[{ subnet: cni.subnet }]] };
  await mkdir(cni.settings.cniConfDir, { recursive: true });
  await writeFile(
    join(cni.settings.cniConfDir, '10-berth.conflist'),
    JSON.stringify({
      cniVersion: '1.0.0',
      name: 'berth',
      plugins: [
        { type: 'bridge', bridge: cni.bridge, isGateway: true, ipMasq: true, ipam },
        { type: 'gate', ...(o.capabilities ? { capabilities: o.capabilities } : {}) },
      ],
    }),
  );
  return { cniPluginDirs: [plugins, '/usr/lib/cni'] };
}

/**
 * A gate network (installGateNetwork) whose gate notes every call in `calls`, one JSON line each:
 * `{ command, args, conf }` (CNI_COMMAND, CNI_ARGS or null, the config read on stdin), and passes
 * the bridge's result on. The gate declares the portMappings, bandwidth and dns capabilities.
 */
export function installRecordNetwork(
  root: string,
  cni: TestCniNetwork,
  calls: string,
): Promise<Record<string, unknown>> {
  const r = cniRecorder(calls);
  return installGateNetwork(root, cni, r.add, {
    del: r.del,
    capabilities: { portMappings: true, bandwidth: true, dns: true },
  });
}
