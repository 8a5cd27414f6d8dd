// Contracts of the cri-gateway (NATS: berth.cri.v1.<op>). The gateway's main face is the Kubernetes
// CRI v1 gRPC socket; these NATS operations let berth's own tools ask it the same questions.

import { defineService, Empty, op, Scope } from './contract.js';
import * as z from './lazy-zod.js';
import { Service } from './subjects.js';

/** Reply of `version`: the same facts the CRI Version RPC reports to the kubelet. */
export const CriVersionReply = z.object({
  /** Version of the kubelet runtime API the gateway speaks (CRI convention: "0.1.0"). */
  version: z.string(),
  runtimeName: z.string(),
  runtimeVersion: z.string(),
  /** CRI API version: "v1". */
  runtimeApiVersion: z.string(),
});
export type CriVersionReply = z.infer<typeof CriVersionReply>;

/** The cri-gateway's own NATS operations (the CRI itself is its gRPC socket). */
export const CriApi = defineService({
  name: Service.cri,
  scope: Scope.cluster,
  ops: {
    version: op({
      input: Empty,
      output: CriVersionReply,
      timeoutMs: 2_000,
      description: 'the CRI version facts the kubelet sees',
    }),
  },
});
