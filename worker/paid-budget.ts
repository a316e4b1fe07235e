import type { JobPayload } from '../core/generation.js';

/**
 * The guild's budget for paid providers, as one job sees it. Every decision to spend goes through
 * here: whether a busy box's job may overflow to the cloud, and whether a paid attempt (overflow or
 * failover) may start.
 */
export interface PaidBudget {
  /** Whether the budget would let a paid provider serve this job now; nothing is set aside. */
  allows(estimateUsd: number): boolean;
  /**
   * Just before a paid attempt: sets the estimate aside, or says no. Today the answer is the
   * admission's (the guild had budget left when the job was admitted); issue 14 makes it an atomic
   * reservation against the month's spend, here.
   */
  reserve(backend: string, estimateUsd: number): Promise<boolean>;
}

/** The budget as the job's payload carries it: `paidAllowed` from admission. */
export function paidBudgetOf(payload: Pick<JobPayload, 'paidAllowed'>): PaidBudget {
  return {
    allows: () => payload.paidAllowed,
    reserve: async () => payload.paidAllowed,
  };
}
