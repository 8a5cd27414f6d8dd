/** The deployable services of berth, by the name they register under on NATS. */
export const Service = {
  image: 'image-service',
  snapshot: 'snapshot-service',
  task: 'task-service',
  shim: 'shim',
  cri: 'cri-gateway',
} as const;
export type Service = (typeof Service)[keyof typeof Service];

/** Short subject token per service (`berth.<token>.v1.<op>`). */
const token: Record<Service, string> = {
  'image-service': 'image',
  'snapshot-service': 'snapshot',
  'task-service': 'task',
  shim: 'shim',
  'cri-gateway': 'cri',
};

/**
 * Builds the request subject of one operation: `berth.<svc>.v1.<op>`, or
 * `berth.<node>.<svc>.v1.<op>` for host-local services (scope `host` in their definition).
 */
export function subjectOf(
  service: { name: Service; scope: 'host' | 'cluster' },
  op: string,
  node?: string,
): string {
  if (service.scope === 'host') {
    if (!node) throw new Error(`service ${service.name} is host-local: a node id is required for "${op}"`);
    return `berth.${node}.${token[service.name]}.v1.${op}`;
  }
  return `berth.${token[service.name]}.v1.${op}`;
}

/** The subject an event topic is published on: `berth.events.<topic>`. */
export function eventSubject(topic: string): string {
  return `berth.events.${topic}`;
}

/** Node ids become a subject token: keep them to safe characters. */
export const NODE_ID_PATTERN = /^[a-zA-Z0-9_-]{1,64}$/;

/** Header names berth puts on NATS messages. */
export const Header = {
  namespace: 'berth-namespace',
  traceparent: 'traceparent',
  tracestate: 'tracestate',
  errorCode: 'berth-error-code',
} as const;

/**
 * A namespace name, as containerd allows them: letters and digits in labels joined by single
 * `.`, `_` or `-`, at most 76 characters. Namespaces become Redis key parts and directory names.
 */
export const NAMESPACE_PATTERN = /^(?=.{1,76}$)[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*$/;
/** What NAMESPACE_PATTERN asks for, in words, for error messages. */
export const NAMESPACE_RULE =
  'a namespace is 1-76 letters and digits, in parts joined by single ".", "_" or "-"';

/** The default namespace, as `default` in containerd. CRI uses `k8s.io`. */
export const DEFAULT_NAMESPACE = 'default';
