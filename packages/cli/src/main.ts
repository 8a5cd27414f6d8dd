// The `berth` command as a process: its command line, its environment, stdout and stderr.
import { restoreExtraCaCerts } from '@berth/kit/extra-ca';
import { failureOf, runCommandLine } from './cli.js';
import { exitQuietlyOnBrokenPipe, exitWhenDrained } from './output.js';

// bin/berth (the launcher) starts Node without NODE_EXTRA_CA_CERTS (~60 ms of certificate parsing
// most commands never use): put it back for every process berth starts, and remember the file for
// the TLS connections this one makes (the kit's NATS and OTLP clients call trustExtraCaCerts).
restoreExtraCaCerts();
exitQuietlyOnBrokenPipe();
runCommandLine(process.argv.slice(2), { env: process.env, out: process.stdout, err: process.stderr }).then(
  (code) => exitWhenDrained(code),
  (err: unknown) => {
    const { line, code } = failureOf(err);
    process.stderr.write(line);
    return exitWhenDrained(code);
  },
);
