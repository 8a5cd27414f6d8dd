import type { PullReply } from '@berth/api';

/**
 * The last line of `berth pull`: what the pull did, as docker words it where docker has words for
 * it. A name that is new or moved to content already on the node says so instead of "up to date".
 */
export function pullStatus(reply: Pick<PullReply, 'fetchedBytes' | 'reference' | 'image'>): string {
  const name = reply.image.name;
  if (reply.fetchedBytes > 0) return `Downloaded newer image for ${name}`;
  switch (reply.reference) {
    case 'created':
      return `Created ${name} from content already on this node (nothing downloaded)`;
    case 'updated':
      return `Updated ${name} to ${reply.image.target.digest}, content already on this node (nothing downloaded)`;
    default:
      return `Image is up to date for ${name}`;
  }
}
