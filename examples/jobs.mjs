// Runs one container per line of standard input (the line is the shell command of the job), at
// most N at a time, and prints each job's output and exit code when it finishes.
//   printf 'echo a\nexit 3\n' | node examples/jobs.mjs IMAGE [CONCURRENCY]
// The image needs /bin/sh. Output is read from each container's log file on its node, so run
// this program on that node.
import { createInterface } from 'node:readline';
import { connect } from '@berth/client';
import { connectOptions } from './config.mjs';

const [image, limitArg = '2'] = process.argv.slice(2);
const limit = Number(limitArg);
if (!image || !Number.isInteger(limit) || limit < 1) {
  console.error('usage: jobs.mjs IMAGE [CONCURRENCY]');
  process.exit(2);
}

const berth = await connect(connectOptions());
// The image on the node: pulled unless it is there already.
await berth.images.ensure(image);

/** Runs one job to its end and returns its exit code and output. */
async function runJob(n, command) {
  const { container } = await berth.containers.run({
    image,
    cmd: ['sh', '-c', command],
    labels: { 'example.job': String(n) },
  });
  try {
    let output = '';
    for await (const line of berth.tasks.logs(container.id, { follow: true })) {
      output += line.full ? `${line.content}\n` : line.content;
    }
    const exit = await berth.tasks.wait(container.id);
    return { code: exit.exitCode, output };
  } finally {
    await berth.containers.delete(container.id, { force: true });
  }
}

let running = 0;
let failed = 0;
const waiting = [];
/** Waits for a free slot: at most `limit` jobs run at once. */
async function slot() {
  if (running < limit) {
    running++;
    return;
  }
  await new Promise((resolve) => waiting.push(resolve));
}
function release() {
  const next = waiting.shift();
  if (next) next();
  else running--;
}

const jobs = [];
let n = 0;
for await (const line of createInterface({ input: process.stdin })) {
  if (line.trim() === '') continue;
  const id = ++n;
  await slot();
  console.log(`[job ${id}] start (${running} running)`);
  jobs.push(
    runJob(id, line)
      .then(({ code, output }) => {
        for (const l of output.split('\n').filter(Boolean)) console.log(`[job ${id}] ${l}`);
        console.log(`[job ${id}] exit=${code}`);
        if (code !== 0) failed++;
      })
      .catch((err) => {
        console.log(`[job ${id}] error ${err.code ?? ''} ${err.message}`);
        failed++;
      })
      .finally(release),
  );
}
await Promise.all(jobs);
await berth.close();
console.log(`${n} jobs, ${failed} failed`);
process.exitCode = failed ? 1 : 0;
