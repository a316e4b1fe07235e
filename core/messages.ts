/** Every string a member or moderator reads, in one place. Values echoed from users are escaped by the caller. */
import { msUntilUtcMidnight } from './quota.js';

function hoursMinutes(ms: number): string {
  const m = Math.ceil(ms / 60_000);
  const h = Math.floor(m / 60);
  return h > 0 ? `${h} h ${m % 60} min` : `${m} min`;
}

export const text = {
  genericError: (ref: string) => `Something went wrong on our side. Please try again later. (reference \`${ref}\`)`,
  notInGuild: 'This command works in servers only.',
  queueUnavailable: 'The image queue is unavailable right now, so nothing was queued and your quota was not used. Please try again in a minute.',
  databaseUnavailable: 'The bot cannot reach its database right now, so nothing was queued. Please try again in a minute.',
  quotaExhausted: (used: number, limit: number, asked: number, now: Date) =>
    `You have used ${used} of your ${limit} images today, so ${asked} more would go over the limit. ` +
    `Daily limits reset at 00:00 UTC (in ${hoursMinutes(msUntilUtcMidnight(now))}).`,
  userBlocked: 'A moderator has turned off image generation for you in this server.',
  tooManyQueued: (inFlight: number, max: number) =>
    `You already have ${inFlight} jobs queued or running (the limit is ${max}). Wait for one to finish, then try again.`,
  queued: (position: number) => (position <= 1 ? 'Queued: you are next.' : `Queued: position ${position}.`),
  running: (backend: string, step: number, total: number, fraction: number) =>
    total > 0
      ? `Generating on ${backend}: step ${step}/${total} (${Math.round(fraction * 100)} %)`
      : `Generating on ${backend}…`,
  starting: 'Starting…',
  failed: (reason: string) => `The image could not be made: ${reason} Your quota was refunded.`,
  cancelled: 'Cancelled. Your quota was refunded.',
  resultsExpired: 'The images were made but expired before they could be posted. Your quota was refunded.',
  quotaSummary: (o: {
    usedToday: number;
    limit: number;
    usedThisMonth: number;
    inFlight: number;
    now: Date;
  }) =>
    [
      `**Today:** ${o.usedToday} of ${o.limit} images used, ${Math.max(o.limit - o.usedToday, 0)} left.`,
      `Daily limits reset at 00:00 UTC (in ${hoursMinutes(msUntilUtcMidnight(o.now))}).`,
      `**This month:** ${o.usedThisMonth} images.`,
      `**Queued or running now:** ${o.inFlight}.`,
    ].join('\n'),
} as const;

/** Failure reasons the worker may report, phrased for members. */
export const failureText: Record<string, string> = {
  all_backends_failed: 'every image backend is down or busy right now. Please try again later.',
  rejected: 'the image backend refused the request.',
  unsafe: 'the image backend flagged the result as unsafe.',
  cancelled: 'the job was cancelled.',
  invalid_payload: 'the job was malformed.',
  budget_spent: "this server's monthly budget for paid providers is spent and no free backend is available.",
  unsupported: 'no configured backend can do this kind of job.',
  expired: 'the result expired before it could be posted.',
};
