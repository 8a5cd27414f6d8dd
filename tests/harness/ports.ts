import { randomInt } from 'node:crypto';
import { createServer } from 'node:net';

/**
 * A free loopback port below the kernel's ephemeral range (32768 and up here), for a port a
 * test publishes: portmap only adds a DNAT rule and never binds it, so a port from bind(0) could
 * be handed to another test file's listener while the published container answers on it.
 */
export async function freeLowPort(): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const port = 20_000 + randomInt(10_000);
    const srv = createServer();
    const bound = await new Promise<boolean>((r) => {
      srv.once('error', () => r(false));
      srv.listen(port, '127.0.0.1', () => r(true));
    });
    if (bound) {
      await new Promise((r) => srv.close(r));
      return port;
    }
  }
  throw new Error('no free loopback port in 20000-29999 after 50 tries');
}
