import { LATENCY_BUCKETS_S, serviceMeter } from '@berth/kit';

/** The shim's own instruments (runc latency, exits by reason, containers by status). */
export interface ShimMetrics {
  /** Records one runc invocation (create runs under conmon and is timed to its sync answer). */
  runc(command: string, seconds: number, outcome: 'ok' | 'error'): void;
  /** Records one announced exit of a task or exec, by reason (`Completed`/`Error` when none). */
  exit(kind: 'task' | 'exec', exitCode: number, reason: string | undefined): void;
}

let made: ShimMetrics | undefined;

/**
 * The shim's instruments, made on first use: after the process's metrics started, or as no-ops
 * where none did (tests). Prometheus names: `berth_shim_runc_duration_seconds`,
 * `berth_shim_exits_total`.
 */
export function shimMetrics(): ShimMetrics {
  if (made) return made;
  const m = serviceMeter('shim');
  const runc = m.createHistogram('berth.shim.runc.duration', {
    description: 'Time of one runc invocation, by command and outcome',
    unit: 's',
    advice: { explicitBucketBoundaries: [...LATENCY_BUCKETS_S] },
  });
  const exits = m.createCounter('berth.shim.exits', {
    description: 'Task and exec exits announced, by reason',
    unit: '{exit}',
  });
  made = {
    runc: (command, seconds, outcome) => runc.record(seconds, { command, outcome }),
    // CRI's words for an exit without a reason of its own.
    exit: (kind, exitCode, reason) =>
      exits.add(1, { kind, reason: reason ?? (exitCode === 0 ? 'Completed' : 'Error') }),
  };
  return made;
}

/**
 * Reports the node's containers by status at each collection (`berth_shim_containers`), from
 * `list` (the shim's task records).
 */
export function observeContainers(list: () => Promise<{ status: string }[]>): void {
  const gauge = serviceMeter('shim').createObservableGauge('berth.shim.containers', {
    description: 'Containers (tasks) on this node, by status',
    unit: '{container}',
  });
  gauge.addCallback(async (r) => {
    const counts: Record<string, number> = { created: 0, running: 0, paused: 0, stopped: 0 };
    for (const t of await list()) counts[t.status] = (counts[t.status] ?? 0) + 1;
    for (const [status, n] of Object.entries(counts)) r.observe(n, { status });
  });
}
