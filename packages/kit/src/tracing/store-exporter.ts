import type { ExportResult } from '@opentelemetry/core';
import type { ReadableSpan, SpanExporter } from '@opentelemetry/sdk-trace-base';
import { fromReadableSpan } from './span-record.js';
import { appendSpans } from './span-store.js';

/**
 * A span exporter into the embedded span store (see span-store.ts), for services running the SDK.
 * A failed write is reported to `onError` and the batch is given up: the store is a convenience,
 * never a reason to hold spans in memory.
 */
export class StoreSpanExporter implements SpanExporter {
  private pending = new Set<Promise<void>>();

  constructor(
    private readonly dir: string,
    private readonly onError: (err: Error) => void,
  ) {}

  export(spans: ReadableSpan[], done: (result: ExportResult) => void): void {
    const p = appendSpans(this.dir, spans.map(fromReadableSpan)).then(
      // ExportResultCode.SUCCESS / FAILED, spelled out so @opentelemetry/core is not loaded for them.
      () => done({ code: 0 }),
      (err: Error) => {
        // The same error to both: the SDK reports the failed result too (to the global error
        // handler), and the diagnostic logger then sees one kind of problem, not two.
        const failed = new Error(`writing spans to ${this.dir} failed: ${err.message}`, { cause: err });
        this.onError(failed);
        done({ code: 1, error: failed });
      },
    );
    this.pending.add(p);
    void p.finally(() => this.pending.delete(p));
  }

  async forceFlush(): Promise<void> {
    await Promise.allSettled([...this.pending]);
  }

  shutdown(): Promise<void> {
    return this.forceFlush();
  }
}
