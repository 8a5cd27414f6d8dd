/**
 * Resolves once every promise settled, or after `timeoutMs`, whichever comes first: how a stopping
 * service waits, bounded, for work it began (in-flight requests, work after a reply).
 */
export async function settleWithin(promises: readonly Promise<unknown>[], timeoutMs: number): Promise<void> {
  if (promises.length === 0) return;
  let timer: NodeJS.Timeout | undefined;
  const bound = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, timeoutMs);
  });
  await Promise.race([Promise.allSettled(promises), bound]);
  clearTimeout(timer);
}
