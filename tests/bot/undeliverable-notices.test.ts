import { describe, expect, test } from 'vitest';
import { createUndeliverableNotices } from '../../bot/undeliverable-notices.js';
import { storedJob } from './jobs/doubles.js';

const HOUR = 3600_000;

describe("moderators' notice of a result Discord refused", () => {
  test('refusals held back after a notice are counted into the next one, which says since when, not "in the last hour"', async () => {
    const posted: string[] = [];
    let now = Date.parse('2026-11-23T12:00:00Z');
    const start = now;
    const notify = createUndeliverableNotices({ post: async (_g, c) => posted.push(c) > 0, now: () => now });
    const job = storedJob({ status: 'succeeded', channelId: 'c1' });
    await notify(job, '403 50013 Missing Permissions'); // a notice
    now += 5 * 60_000;
    await notify(job, '403 50013 Missing Permissions'); // within the hour: held back, counted
    expect(posted).toHaveLength(1);
    now = start + 3 * HOUR;
    await notify(job, '403 50013 Missing Permissions'); // a notice, nearly three hours after the held one
    expect(posted).toHaveLength(2);
    expect(posted[0]).not.toContain('failed the same way');
    expect(posted[1]).toContain(`1 more result in that channel failed the same way since the previous notice <t:${start / 1000}:R>.`);
    expect(posted[1]).not.toContain('in the last hour');
  });
});
