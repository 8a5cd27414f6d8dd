import type { Attributes } from '@opentelemetry/api';

/**
 * The attributes of a client or server span of one operation over NATS: the OpenTelemetry RPC and
 * messaging conventions (rpc.system/service/method, messaging.system=nats and the subject) and
 * berth's namespace and node.
 */
export function rpcAttributes(o: {
  service: string;
  op: string;
  subject: string;
  namespace: string;
  node?: string | undefined;
}): Attributes {
  const a: Attributes = {
    'rpc.system': 'nats',
    'rpc.service': o.service,
    'rpc.method': o.op,
    'messaging.system': 'nats',
    'messaging.destination.name': o.subject,
    'berth.namespace': o.namespace,
  };
  if (o.node) a['berth.node'] = o.node;
  return a;
}
