/**
 * Posting a result when Discord says no. A post that Discord refuses for good (4xx: missing
 * permissions, unknown channel) is tried a few times with backoff, in case a moderator fixes the
 * channel, then given up: the job is recorded as undeliverable and the member refunded. A post
 * that fails for a passing reason (5xx, network) is tried longer. The attempt count and the next
 * try live on the job's row, so every bot process and every restart keeps to the same schedule.
 */

/** How a failed post failed: `refused` for good by Discord, or `failed` for a reason that may pass. */
export type DeliveryFailure = 'refused' | 'failed';

export interface DeliveryRetryPolicy {
  /** Tries (the first included) before a refused result is given up. */
  refusedTries: number;
  /** Tries before a result that keeps failing for passing reasons is given up. */
  failedTries: number;
  /** Wait after the first failed try; doubled after each further one. */
  firstWaitMs: number;
  maxWaitMs: number;
}

/** 5 tries over about 7.5 minutes when refused; 20 over about 2.5 hours when Discord is failing. */
export const DELIVERY_RETRY: DeliveryRetryPolicy = { refusedTries: 5, failedTries: 20, firstWaitMs: 30_000, maxWaitMs: 10 * 60_000 };

export type DeliveryDecision = { giveUp: true } | { giveUp: false; retryInMs: number };

/**
 * What happens after a failed try.
 * @param tries - failed tries so far, this one included (1 after the first).
 */
export function afterFailedDelivery(
  tries: number,
  failure: DeliveryFailure,
  policy: DeliveryRetryPolicy = DELIVERY_RETRY,
): DeliveryDecision {
  const max = failure === 'refused' ? policy.refusedTries : policy.failedTries;
  if (tries >= max) return { giveUp: true };
  return { giveUp: false, retryInMs: Math.min(policy.maxWaitMs, policy.firstWaitMs * 2 ** (tries - 1)) };
}
