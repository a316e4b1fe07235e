/** Discord's per-file limit when an interaction does not state its channel's (10 MiB). */
export const DEFAULT_UPLOAD_LIMIT_BYTES = 10 * 1024 * 1024;

/** Discord accepts at most this many files per message. */
const MAX_FILES_PER_MESSAGE = 10;

/**
 * Splits files (by size, in order) into messages so that no message carries more than `limitBytes`
 * in total or more than {@link MAX_FILES_PER_MESSAGE} files. Order is kept, so the first file (the
 * grid, when there is one) always opens the first message. Each file must already fit on its own.
 *
 * The total per message is held to the per-file limit: Discord's request size limit is never below
 * the channel's per-file limit, so a message planned this way is accepted whatever the server's boost.
 */
export function planMessages(sizes: readonly number[], limitBytes: number, maxFiles = MAX_FILES_PER_MESSAGE): number[][] {
  const messages: number[][] = [];
  let current: number[] = [];
  let total = 0;
  sizes.forEach((size, i) => {
    if (size > limitBytes) throw new Error(`file ${i} (${size} bytes) exceeds the per-file limit`);
    if (current.length > 0 && (total + size > limitBytes || current.length >= maxFiles)) {
      messages.push(current);
      current = [];
      total = 0;
    }
    current.push(i);
    total += size;
  });
  if (current.length > 0) messages.push(current);
  return messages;
}
