import { BerthError, Code } from '@berth/api';
import { allowedOomScoreAdj } from '@berth/kit/oom-score';
import { type CgroupSupport, cgroupAskOf, checkCgroupSupport } from '../cgroup-support.js';

type Obj = Record<string, unknown>;

/**
 * The config.json the shim writes: the caller's spec with root.path set to the bundle's rootfs,
 * process.terminal matching the request, a default cgroups path, and an oom_score_adj the host
 * allows (lowering it below the agent's own needs CAP_SYS_RESOURCE, which this kind of host lacks:
 * runc would fail, so the value is raised to the agent's own and a warning is returned, as
 * containerd's CRI with restrict_oom_score_adj). linux.resources this node's cgroups (`cgroups`)
 * cannot apply are refused FAILED_PRECONDITION before runc fails on them: `unified` on v1, a swap
 * limit without swap accounting.
 */
export function prepareSpec(
  input: Obj,
  opts: { ns: string; id: string; rootfs: string | undefined; terminal: boolean; cgroups: CgroupSupport },
): { spec: Obj; warnings: string[] } {
  const spec = structuredClone(input) as Obj;
  const warnings: string[] = [];
  const proc = spec.process as Obj | undefined;
  const args = proc?.args;
  if (!proc || !Array.isArray(args) || args.length === 0) {
    throw new BerthError(Code.INVALID_ARGUMENT, `task "${opts.id}": spec.process.args must name a command`);
  }
  proc.terminal = opts.terminal;
  const root = (spec.root as Obj | undefined) ?? {};
  if (opts.rootfs) {
    spec.root = { ...root, path: opts.rootfs };
  } else if (typeof root.path !== 'string' || !root.path.startsWith('/')) {
    throw new BerthError(
      Code.INVALID_ARGUMENT,
      `task "${opts.id}": no rootfs mounts given and spec.root.path is not an absolute path`,
    );
  }
  const linux = (spec.linux as Obj | undefined) ?? {};
  spec.linux = linux;
  if (typeof linux.cgroupsPath !== 'string' || linux.cgroupsPath === '') {
    linux.cgroupsPath = `/berth/${opts.ns}/${opts.id}`;
  }
  checkCgroupSupport(cgroupAskOf(linux.resources), opts.cgroups, {
    unified: `task "${opts.id}": spec linux.resources.unified`,
    swap: `task "${opts.id}": spec linux.resources.memory.swap`,
  });
  const adj = proc.oomScoreAdj;
  const allowed = typeof adj === 'number' ? allowedOomScoreAdj(adj) : adj;
  if (allowed !== adj) {
    warnings.push(`oomScoreAdj ${adj} needs CAP_SYS_RESOURCE, which this host lacks: using ${allowed}`);
    proc.oomScoreAdj = allowed;
  }
  return { spec, warnings };
}
