/**
 * The simulated application instances' think time between two statements (support/writers.ts, loop-writer.ts,
 * column-writers.ts). ZDT_WRITER_THINK_MS sets it for one run.
 */
export const WRITER_THINK_MS = Number(process.env.ZDT_WRITER_THINK_MS ?? 1);

export const think = (): Promise<void> => new Promise((r) => setTimeout(r, WRITER_THINK_MS));
