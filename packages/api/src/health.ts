import * as z from './lazy-zod.js';

/** Request of the `info` operation every service answers. */
export const InfoRequest = z.object({}).strict();
export type InfoRequest = z.infer<typeof InfoRequest>;

/** Reply of the `info` operation: who answered, where, since when. */
export const InfoReply = z.object({
  service: z.string(),
  version: z.string(),
  node: z.string(),
  pid: z.number().int(),
  instanceId: z.string(),
  startedAt: z.string(),
  uptimeSeconds: z.number(),
  healthy: z.boolean(),
  checks: z.record(z.string(), z.string()),
});
export type InfoReply = z.infer<typeof InfoReply>;
