// Follows berth's events and prints every task exit, as `berth events --filter topic=tasks.exit`.
//   node examples/follow-exits.mjs [COUNT]     (stops after COUNT exits, or on Ctrl-C)
import { connect } from '@berth/client';
import { connectOptions } from './config.mjs';

const count = process.argv[2] ? Number(process.argv[2]) : Number.POSITIVE_INFINITY;
const berth = await connect(connectOptions());
const exits = await berth.events.exits();
process.once('SIGINT', () => exits.close());
process.once('SIGTERM', () => exits.close());
// The subscription is registered with the server: no exit from here on is missed.
console.error('listening for task exits');
let seen = 0;
for await (const e of exits) {
  const what = e.execId ? `${e.id.slice(0, 12)} exec ${e.execId}` : e.id.slice(0, 12);
  console.log(`exit ${what} code=${e.exitCode}${e.reason ? ` reason=${e.reason}` : ''} node=${e.node}`);
  if (++seen >= count) break;
}
await berth.close();
