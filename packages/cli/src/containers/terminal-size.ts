/**
 * The terminal's size sent to a container's monitor, one send at a time. Two sends in flight can
 * land in either order (each opens the monitor's control FIFO, or is its own NATS request), so a
 * resize right after the first one could be overtaken by it and the container keep the old size.
 * Chained, each send reads the size when it goes out: the last one always carries the latest.
 */
export interface SizedOutput {
  rows?: number;
  columns?: number;
}

/**
 * Returns a function that queues one send of `output`'s size (rows, columns; 24x80 when unknown,
 * at most 1000 each) after the sends before it; a failed send is dropped, the next one goes on.
 */
export function terminalSizer(
  output: SizedOutput,
  send: (rows: number, cols: number) => Promise<unknown>,
): () => Promise<void> {
  let last: Promise<void> = Promise.resolve();
  return () => {
    last = last
      .then(() => send(Math.min(1000, output.rows || 24), Math.min(1000, output.columns || 80)))
      .then(
        () => undefined,
        () => undefined,
      );
    return last;
  };
}
