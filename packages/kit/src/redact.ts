/**
 * Hides the credentials of a server URL (or a comma-separated list of them) for logs and output:
 * `nats://berth:secret@127.0.0.1:4222` becomes `nats://***@127.0.0.1:4222`, `redis://:pw@h:6379`
 * becomes `redis://***@h:6379`. Anything without userinfo (a unix socket path, a bare host) is
 * returned unchanged.
 */
export function redactUrl(url: string): string {
  return url
    .split(',')
    .map((part) => part.replace(/^(\s*[a-zA-Z][a-zA-Z0-9+.-]*:\/\/)[^/?#]*@/, '$1***@'))
    .join(',');
}
