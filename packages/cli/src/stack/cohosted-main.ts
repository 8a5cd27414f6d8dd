/**
 * Entry point of the co-hosted process that `berth up --cohosted` supervises: every service of
 * the node in one Node process (kit runCohosted). The supervisor passes each service's own login
 * in BERTH_COHOSTED_LOGINS; each service logs to services/<name>.log as it does alone, and this
 * process's own stdout/stderr are services/cohosted.log.
 */
import { BERTH_VERSION, BerthError, Code } from '@berth/api';
import { runCohosted } from '@berth/kit/cohost';
import { loadConfig } from '@berth/kit/config';
import { hostLayout } from '@berth/kit/layout';
import * as z from 'zod';
import { rotateIfLarge } from './child.js';
import { COHOSTED } from './cohosted-services.js';
import { COHOSTED_LOGINS_ENV, serviceLogFile } from './plan.js';

const Logins = z.record(
  z.string(),
  z.object({ natsUrl: z.string().min(1).optional(), redisUrl: z.string().min(1).optional() }),
);

function logins(): z.infer<typeof Logins> {
  const raw = process.env[COHOSTED_LOGINS_ENV];
  if (!raw) return {};
  const parsed = Logins.safeParse(JSON.parse(raw));
  if (!parsed.success) {
    throw new BerthError(Code.INVALID_ARGUMENT, `${COHOSTED_LOGINS_ENV} is not a map of service URLs`);
  }
  return parsed.data;
}

const urls = logins();
// The URLs carry passwords; nothing this process starts (runc, conmon, CNI plugins) needs them.
delete process.env[COHOSTED_LOGINS_ENV];
let serviceLogs: string | undefined;
try {
  serviceLogs = hostLayout(loadConfig()).serviceLogs;
} catch {
  // runCohosted reports the bad config with its own clear line and exit code.
}

await runCohosted({
  processName: 'berth-cohosted',
  version: BERTH_VERSION,
  services: COHOSTED,
  urls: (service) => urls[service],
  logFile: (service) => {
    if (!serviceLogs) return undefined;
    const file = serviceLogFile(serviceLogs, service, 1, 1);
    rotateIfLarge(file);
    return file;
  },
});
