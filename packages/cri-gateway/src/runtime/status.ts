import { type InfoReply, type Service, toBerthError } from '@berth/api';
import type { NetworkReadiness } from './ports.js';

/** Condition types the kubelet requires (cri-api constants.go). */
export const ConditionType = {
  runtimeReady: 'RuntimeReady',
  networkReady: 'NetworkReady',
} as const;
export type ConditionType = (typeof ConditionType)[keyof typeof ConditionType];

/** One condition of the runtime, as CRI's RuntimeCondition. */
export interface Condition {
  type: ConditionType;
  status: boolean;
  reason: string;
  message: string;
}

/** Asks one berth service for its `info`; the gateway passes one that goes over NATS. */
export type InfoProbe = (service: Service) => Promise<InfoReply>;

/** The services that must answer for containers to run: the task-service and this node's shim. */
export const RUNTIME_SERVICES = ['task-service', 'shim'] as const satisfies readonly Service[];

/** Result of a status check: the conditions, and what each service answered (for verbose output). */
export interface RuntimeStatus {
  conditions: Condition[];
  services: Record<string, InfoReply | { error: string }>;
}

/**
 * Checks the runtime: RuntimeReady when every runtime service answers `info` and calls itself
 * healthy; NetworkReady when the node's shim answers with a usable default CNI network (as
 * containerd reports its CNI plugin's status), because a runtime that claimed it without one would
 * have the kubelet schedule pods that cannot get an address.
 */
export async function runtimeStatus(
  probe: InfoProbe,
  network: () => Promise<NetworkReadiness>,
): Promise<RuntimeStatus> {
  const net = network();
  const services: RuntimeStatus['services'] = {};
  const problems: string[] = [];
  await Promise.all(
    RUNTIME_SERVICES.map(async (svc) => {
      try {
        const info = await probe(svc);
        services[svc] = info;
        if (!info.healthy) {
          const bad = Object.entries(info.checks)
            .filter(([, v]) => v !== 'ok')
            .map(([k, v]) => `${k}: ${v}`);
          problems.push(`${svc} is unhealthy (${bad.join('; ')})`);
        }
      } catch (err) {
        const e = toBerthError(err);
        services[svc] = { error: e.message };
        problems.push(e.message);
      }
    }),
  );
  problems.sort();
  const runtimeReady: Condition =
    problems.length === 0
      ? { type: ConditionType.runtimeReady, status: true, reason: '', message: '' }
      : {
          type: ConditionType.runtimeReady,
          status: false,
          reason: 'BerthServicesNotReady',
          message: problems.join('; '),
        };
  const n = await net;
  const networkReady: Condition = n.ready
    ? { type: ConditionType.networkReady, status: true, reason: '', message: '' }
    : {
        type: ConditionType.networkReady,
        status: false,
        reason: 'NetworkPluginNotReady',
        message: `Network plugin returns error: ${n.message}`,
      };
  return { conditions: [runtimeReady, networkReady], services };
}
