// Pulls an image, runs a container from it and prints its output, as `berth run --rm`.
//   node examples/run-container.mjs IMAGE [COMMAND ARG...]
// The output is read from the container's log file, which is on the node the container runs on:
// run this program on that node (berth has no NATS operation that streams a task log yet).
import { connect } from '@berth/client';
import { connectOptions } from './config.mjs';

const [image, ...cmd] = process.argv.slice(2);
if (!image) {
  console.error('usage: run-container.mjs IMAGE [COMMAND ARG...]');
  process.exit(2);
}

const berth = await connect(connectOptions());
try {
  const pull = berth.images.pullWithProgress(image);
  for await (const p of pull) {
    const done = p.blobs.filter((b) => b.status === 'done' || b.status === 'exists').length;
    console.error(`pull ${image}: ${p.phase} (${done}/${p.blobs.length} blobs)`);
  }
  const { image: record } = await pull.result;
  console.error(`pulled ${record.name} ${record.target.digest}`);

  const { container } = await berth.containers.run({
    image: record.name,
    ...(cmd.length ? { cmd } : {}),
  });
  try {
    for await (const line of berth.tasks.logs(container.id, { follow: true })) {
      const out = line.stream === 'stdout' ? process.stdout : process.stderr;
      out.write(line.full ? `${line.content}\n` : line.content);
    }
    const exit = await berth.tasks.wait(container.id);
    console.error(`container ${container.id.slice(0, 12)} exited with ${exit.exitCode}`);
    process.exitCode = exit.exitCode;
  } finally {
    await berth.containers.delete(container.id, { force: true });
  }
} finally {
  await berth.close();
}
