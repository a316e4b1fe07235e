import { budgetMonth } from './budget.js';
import { UserError } from './errors.js';
import type { GenerationRequest, JobPayload } from './generation.js';
import { text } from './messages.js';
import type { Actor, InteractionRef, JobStore, ReserveOutcome } from './ports.js';
import { recentImages, utcDay, utcMonthStart } from './quota.js';

export interface AdmitDeps {
  store: Pick<JobStore, 'reserve'>;
  now: () => Date;
  deploymentDailyLimit: number;
  deploymentMonthlyBudgetUsd: number;
  maxInFlight: number;
}

/**
 * Reserves quota and records the job in one atomic step, or throws a UserError saying why not.
 * Parallel requests cannot overshoot: the reservation is a conditional update on the member's row.
 */
export async function admitJob(
  deps: AdmitDeps,
  actor: Actor,
  interaction: InteractionRef,
  request: GenerationRequest,
  parentJobId?: string,
): Promise<{
  jobId: string;
  usedToday: number;
  recentImages: number;
  limit: number;
  budgetLeftUsd: number;
  budget: NonNullable<JobPayload['budget']>;
}> {
  const now = deps.now();
  let outcome: ReserveOutcome;
  try {
    outcome = await deps.store.reserve({
      actor,
      interaction,
      request,
      day: utcDay(now),
      monthStart: utcMonthStart(now),
      deploymentMonthlyBudgetUsd: deps.deploymentMonthlyBudgetUsd,
      deploymentDailyLimit: deps.deploymentDailyLimit,
      maxInFlight: deps.maxInFlight,
      parentJobId,
    });
  } catch (err) {
    throw new UserError('database_unavailable', text.databaseUnavailable, { cause: err });
  }
  if (outcome.ok) {
    const { jobId, usedToday, prevDayImages, limit, budgetLeftUsd } = outcome;
    return {
      jobId,
      usedToday,
      recentImages: recentImages(Math.max(0, usedToday - request.count), prevDayImages, now),
      limit,
      budgetLeftUsd,
      budget: { month: budgetMonth(now), limitUsd: outcome.budgetUsd, spentUsd: outcome.spentUsd },
    };
  }
  switch (outcome.reason) {
    case 'busy':
      throw new UserError('bot_busy', text.botBusy);
    case 'blocked':
      throw new UserError('user_blocked', text.userBlocked);
    case 'in_flight':
      throw new UserError('too_many_queued', text.tooManyQueued(outcome.inFlight, deps.maxInFlight));
    case 'quota':
      throw new UserError('quota_exhausted', text.quotaExhausted(outcome.usedToday, outcome.limit, request.count, now));
  }
}
