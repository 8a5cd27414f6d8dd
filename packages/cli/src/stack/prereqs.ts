import { existsSync, readFileSync } from 'node:fs';
import type { StackPlan } from './plan.js';
import { which } from './proc.js';

/** What the checks look at; tests and callers may swap the environment. */
export interface PrereqEnv {
  path: string;
  uid: number;
  /** Content of /proc/filesystems. */
  filesystems: string;
}

/** The real machine's view. */
export function hostPrereqEnv(): PrereqEnv {
  let filesystems = '';
  try {
    filesystems = readFileSync('/proc/filesystems', 'utf8');
  } catch {
    // No /proc: reported as missing overlayfs below, which is the useful line anyway.
  }
  return { path: process.env.PATH ?? '', uid: process.getuid?.() ?? 0, filesystems };
}

/**
 * Checks what `berth up` needs before it starts anything, and returns one line per problem, each
 * naming the fix. An empty list means go.
 */
export function checkPrerequisites(plan: StackPlan, env: PrereqEnv = hostPrereqEnv()): string[] {
  const problems: string[] = [];
  const tools: { cmd: string; fix: string; needed: boolean }[] = [
    {
      cmd: 'nats-server',
      fix: 'apt-get install nats-server (or set BERTH_NATS_URL / natsUrl to use a running NATS)',
      needed: plan.embedded.some((e) => e.kind === 'nats-server'),
    },
    {
      cmd: 'redis-server',
      fix: 'apt-get install redis-server (or set BERTH_REDIS_URL / redisUrl to use a running Redis)',
      needed: plan.embedded.some((e) => e.kind === 'redis-server'),
    },
    { cmd: 'runc', fix: 'apt-get install runc', needed: true },
    { cmd: 'conmon', fix: 'apt-get install conmon', needed: true },
  ];
  for (const t of tools) {
    if (t.needed && !which(t.cmd, env.path)) problems.push(`${t.cmd} not found: ${t.fix}`);
  }
  if (env.uid !== 0) {
    problems.push(`berth up must run as root (uid is ${env.uid}): run it with sudo`);
  }
  if (!/\boverlay$/m.test(env.filesystems)) {
    problems.push('overlayfs is not available (no "overlay" in /proc/filesystems): run modprobe overlay');
  }
  const unbuilt = [...new Set(plan.services.filter((s) => !existsSync(s.main)).map((s) => s.service))];
  for (const s of unbuilt) {
    problems.push(
      `${s} is not built (no ${plan.services.find((p) => p.service === s)?.main}): run pnpm -w run build`,
    );
  }
  return problems;
}
