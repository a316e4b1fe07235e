import { adminText } from '../core/messages.js';
import type { StoredJob } from '../core/ports.js';

/** A channel refusing posts refuses every result: its moderators hear it once an hour, with a count. */
const QUIET_MS = 60 * 60_000;

/**
 * Tells a guild's moderators (its log channel) that a result could not be posted and was refunded.
 * Results refused the same way in the same channel within the hour after a notice are counted into
 * the next notice (which says since when) rather than announced one by one; `npm run status` lists
 * every one of them.
 */
export function createUndeliverableNotices(o: {
  post: (guildId: string, content: string) => Promise<boolean>;
  now: () => number;
}): (job: StoredJob, reason: string) => Promise<void> {
  const last = new Map<string, { at: number; held: number }>();
  return async (job, reason) => {
    const key = `${job.guildId}:${job.channelId}:${reason}`;
    const seen = last.get(key);
    const now = o.now();
    if (seen && now - seen.at < QUIET_MS) {
      seen.held++;
      return;
    }
    last.set(key, { at: now, held: 0 });
    const refunded = job.status === 'succeeded' ? job.imageCount : 0;
    // The held count runs from the previous notice, however long ago: the text names that time, not "the last hour".
    const held = seen ? { count: seen.held, since: seen.at } : null;
    await o.post(job.guildId, adminText.undeliverable(job.userId, job.channelId, job.id, reason, refunded, held));
  };
}
