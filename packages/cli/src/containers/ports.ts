import { isIP } from 'node:net';
import { errors, type PublishedPort } from '@berth/api';

/** A port number of a `-p` flag, 1-65535. */
function port(v: string | undefined, what: string, flag: string): number {
  const n = Number(v);
  if (!v || !/^\d+$/.test(v) || n < 1 || n > 65535) {
    throw errors.invalid(`invalid port mapping "${flag}": ${what} "${v ?? ''}" is not a port (1-65535)`);
  }
  return n;
}

/**
 * Parses `-p [HOSTIP:]HOSTPORT:CONTAINERPORT[/tcp|udp]` (docker's spelling; an IPv6 host address
 * in brackets). Ranges and a host port chosen by the node are not supported: INVALID_ARGUMENT.
 */
export function parsePublish(flag: string): PublishedPort {
  const slash = flag.lastIndexOf('/');
  const spec = slash < 0 ? flag : flag.slice(0, slash);
  const proto = slash < 0 ? 'tcp' : flag.slice(slash + 1).toLowerCase();
  if (proto !== 'tcp' && proto !== 'udp') {
    throw errors.invalid(`invalid port mapping "${flag}": protocol "${proto}" is not tcp or udp`);
  }
  let hostIP: string | undefined;
  let rest = spec;
  const v6 = /^\[([^\]]+)\]:(.*)$/.exec(spec);
  if (v6) {
    hostIP = v6[1];
    rest = v6[2] ?? '';
  } else if (spec.split(':').length === 3) {
    const i = spec.indexOf(':');
    hostIP = spec.slice(0, i);
    rest = spec.slice(i + 1);
  }
  const parts = rest.split(':');
  if (parts.length !== 2) {
    throw errors.invalid(
      `invalid port mapping "${flag}": expected [HOSTIP:]HOSTPORT:CONTAINERPORT[/tcp|udp]`,
    );
  }
  if (hostIP !== undefined && hostIP !== '' && isIP(hostIP) === 0) {
    throw errors.invalid(`invalid port mapping "${flag}": "${hostIP}" is not an IP address`);
  }
  return {
    hostPort: port(parts[0], 'host port', flag),
    containerPort: port(parts[1], 'container port', flag),
    protocol: proto,
    ...(hostIP ? { hostIP } : {}),
  };
}
