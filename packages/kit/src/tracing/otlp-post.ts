import type { OutgoingHttpHeaders } from 'node:http';
import { trustExtraCaCerts } from '../extra-ca.js';

/** How a bounded export ended. */
export type PostOutcome = { ok: true } | { ok: false; error: string };

/**
 * POSTs an OTLP/JSON body and waits at most `boundMs` for the answer; past that the request is
 * destroyed, so a slow or silent collector costs a command no more than the bound. Never throws.
 * node:http rather than fetch: fetch loads undici on first use, tens of ms a CLI command would pay.
 */
export async function postOtlp(
  url: string,
  body: string,
  headers: Record<string, string>,
  boundMs: number,
): Promise<PostOutcome> {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return { ok: false, error: `invalid OTLP endpoint ${JSON.stringify(url)}` };
  }
  // A CLI started by berth's launcher without NODE_EXTRA_CA_CERTS still trusts its CAs.
  if (u.protocol === 'https:') await trustExtraCaCerts();
  const mod = u.protocol === 'https:' ? await import('node:https') : await import('node:http');
  const h: OutgoingHttpHeaders = {
    ...headers,
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
  };
  return new Promise<PostOutcome>((resolve) => {
    let done = false;
    const finish = (o: PostOutcome) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      req.destroy();
      resolve(o);
    };
    const req = mod.request(u, { method: 'POST', headers: h, agent: false }, (res) => {
      res.resume();
      res.on('end', () =>
        finish(
          res.statusCode && res.statusCode < 300
            ? { ok: true }
            : { ok: false, error: `collector answered ${res.statusCode}` },
        ),
      );
    });
    const timer = setTimeout(() => finish({ ok: false, error: `no answer within ${boundMs} ms` }), boundMs);
    req.on('error', (err) => finish({ ok: false, error: err.message }));
    req.end(body);
  });
}
