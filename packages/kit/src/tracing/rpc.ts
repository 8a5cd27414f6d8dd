import { Service } from '@berth/api/subjects';
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

// The request fields that name berth's objects, per service, and the span attribute each becomes.
const OBJECT_FIELDS: Record<string, Record<string, string>> = {
  [Service.task]: { id: 'berth.container.id', execId: 'berth.exec.id', image: 'berth.image.ref' },
  [Service.shim]: { id: 'berth.container.id', execId: 'berth.exec.id', podId: 'berth.pod.id' },
  [Service.image]: { ref: 'berth.image.ref', name: 'berth.image.ref', digest: 'berth.digest' },
  [Service.snapshot]: {
    key: 'berth.snapshot.key',
    parent: 'berth.snapshot.parent',
    name: 'berth.snapshot.name',
  },
};

/**
 * berth's attributes of a request: the container, exec, image, digest or snapshot its input names
 * (string fields only), so a server span says what it worked on.
 */
export function objectAttributes(service: string, input: unknown): Attributes {
  const fields = OBJECT_FIELDS[service];
  if (!fields || typeof input !== 'object' || input === null) return {};
  const a: Attributes = {};
  for (const [field, attr] of Object.entries(fields)) {
    const v = (input as Record<string, unknown>)[field];
    if (typeof v === 'string' && v.length > 0 && v.length <= 512) a[attr] = v;
  }
  return a;
}
