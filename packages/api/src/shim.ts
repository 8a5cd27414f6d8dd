// Contracts of the shim agent (NATS: berth.<node>.shim.v1.<op>). Owned by the shim work; the
// task-service relies on these: extend, do not break. Every request names namespace and id.
import { z } from 'zod';
import { Mount } from './snapshot.js';

const TaskRef = z.object({ namespace: z.string().min(1), id: z.string().min(1) });

/** Task (and exec process) states, as containerd's shim reports them. */
export const TaskStatus = {
  created: 'created',
  running: 'running',
  paused: 'paused',
  stopped: 'stopped',
  unknown: 'unknown',
} as const;
export type TaskStatus = (typeof TaskStatus)[keyof typeof TaskStatus];

/** Request of `create`: write the bundle, mount the rootfs, start the monitor and `runc create`. */
export const ShimCreateRequest = TaskRef.extend({
  /** The full OCI runtime spec (config.json); root.path is set by the shim to the bundle's rootfs. */
  spec: z.record(z.string(), z.unknown()),
  rootfs: z.array(Mount),
  terminal: z.boolean().default(false),
  stdin: z.boolean().default(false),
  /** Where the CRI-format log goes; default under the state root (logs/<ns>/<id>.log). */
  logPath: z.string().optional(),
});
export type ShimCreateRequest = z.infer<typeof ShimCreateRequest>;

export const ShimTaskRef = TaskRef.extend({ execId: z.string().optional() });
export type ShimTaskRef = z.infer<typeof ShimTaskRef>;

export const ShimKillRequest = ShimTaskRef.extend({
  signal: z.union([z.number().int().positive(), z.string()]).default('SIGTERM'),
  all: z.boolean().default(false),
});
export type ShimKillRequest = z.infer<typeof ShimKillRequest>;

/** State of a task or exec process. exitCode/exitedAt are set once it stopped. */
export const ShimState = z.object({
  namespace: z.string(),
  id: z.string(),
  execId: z.string().optional(),
  status: z.enum(['created', 'running', 'paused', 'stopped', 'unknown']),
  pid: z.number().int(),
  exitCode: z.number().int().optional(),
  exitedAt: z.string().optional(),
  /** "OOMKilled" when the kernel OOM killer ended it. */
  reason: z.string().optional(),
  logPath: z.string().optional(),
});
export type ShimState = z.infer<typeof ShimState>;

/** Exit of a task or exec, as persisted and announced (event topic `tasks.exit`). */
export const TaskExit = z.object({
  namespace: z.string(),
  id: z.string(),
  execId: z.string().optional(),
  pid: z.number().int(),
  exitCode: z.number().int(),
  exitedAt: z.string(),
  reason: z.string().optional(),
  node: z.string(),
});
export type TaskExit = z.infer<typeof TaskExit>;

/** Request of `exec`: a new process (OCI process spec) in a running task. */
export const ShimExecRequest = TaskRef.extend({
  execId: z.string().min(1),
  process: z.record(z.string(), z.unknown()),
  terminal: z.boolean().default(false),
  stdin: z.boolean().default(false),
});
export type ShimExecRequest = z.infer<typeof ShimExecRequest>;
