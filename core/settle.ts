import type { FailureCode, JobFailure } from './failures.js';
import type { Attempt, JobResult, ParsedJobResult } from './generation.js';
import { failureText, text } from './messages.js';

/**
 * The settle policy: how each way a job can end is booked. The store writes the outcome in one
 * statement guarded by the job's status, so whichever bot process settles first decides and every
 * later settle changes nothing.
 */
export type SettleOutcome =
  | { status: 'succeeded'; result: JobResult }
  | { status: 'failed'; code: FailureCode; message: string; attempts: Attempt[] }
  | { status: 'cancelled'; attempts: Attempt[] };

/**
 * A job the worker completed: one the member cancelled before it was settled is cancelled
 * (refunded, nothing posted: they were told so), its attempts still booked; a result that does not
 * parse fails as malformed; one whose images left Redis before they could be fetched fails as
 * expired; one whose images the output limits refuse (`refused`: why) fails as malformed saying
 * why (both with their attempts still booked); else it succeeded.
 */
export function completedOutcome(
  parsed: ParsedJobResult,
  imagesPresent: boolean,
  cancelled: boolean,
  refused: string | null = null,
): SettleOutcome {
  if (cancelled) return { status: 'cancelled', attempts: parsed.success ? parsed.data.attempts : [] };
  if (!parsed.success) return { status: 'failed', code: 'invalid_payload', message: failureText.invalid_payload, attempts: [] };
  if (!imagesPresent) return { status: 'failed', code: 'expired', message: failureText.expired, attempts: parsed.data.attempts };
  if (refused !== null)
    return { status: 'failed', code: 'invalid_payload', message: text.resultRefused(refused), attempts: parsed.data.attempts };
  return { status: 'succeeded', result: parsed.data };
}

/**
 * Whether a `failed` event ends the job: only once BullMQ has no retry left (the job sits in its
 * failed set) or no longer knows the job; a failed attempt with a retry to come settles nothing.
 */
export function failureIsFinal(queueState: string | null): boolean {
  return queueState === null || queueState === 'failed';
}

/** A job that failed for good, from the worker's failure record; without one, every backend failed. */
export function failedOutcome(failure: JobFailure | null): SettleOutcome {
  const attempts = failure?.attempts ?? [];
  if (failure?.code === 'cancelled') return { status: 'cancelled', attempts };
  return {
    status: 'failed',
    code: failure?.code ?? 'all_backends_failed',
    message: failure?.message ?? failureText.all_backends_failed,
    attempts,
  };
}

/**
 * What a job's earlier tries left in Redis (core/io/results.ts): the worker's failure record, and
 * the attempts of a paid result one of them kept for the next try.
 */
export interface EarlierTries {
  failure: JobFailure | null;
  keptAttempts: Attempt[] | null;
}

/**
 * Rule: what a job no worker holds has billed so far. A kept paid result lists every attempt up to
 * it, those of the failure record it started from included, so it is taken alone (booked once).
 */
function attemptsSoFar(t: EarlierTries): Attempt[] {
  return t.keptAttempts ?? t.failure?.attempts ?? [];
}

/**
 * A job cancelled while no worker holds it: still queued, a retry waiting out its backoff, handed
 * back by a stopping worker, or failed for good but not yet settled. Refunded; whatever earlier
 * tries billed stays booked.
 */
export function cancelledUnheld(t: EarlierTries): SettleOutcome {
  return { status: 'cancelled', attempts: attemptsSoFar(t) };
}

/**
 * A job still queued or running in Postgres past the sweep's window, which BullMQ no longer runs
 * (a bot or the queue offline for days): it ends as failed and refunded rather than running again,
 * what earlier tries billed still booked.
 */
export function abandoned(t: EarlierTries): SettleOutcome {
  return { status: 'failed', code: 'abandoned', message: failureText.abandoned, attempts: attemptsSoFar(t) };
}

/** A job admitted before its input images were fetched, whose images were refused: nothing ran. */
export function inputRejected(message: string): SettleOutcome {
  return { status: 'failed', code: 'input_rejected', message, attempts: [] };
}

/** A job whose queue entry could not be written: nothing ran. */
export const NOT_ENQUEUED: SettleOutcome = { status: 'failed', code: 'queue_unavailable', message: text.queueUnavailable, attempts: [] };

/** What the store writes when it settles a job. */
export interface Settlement {
  status: SettleOutcome['status'];
  /** Rule: only a success is charged; a failure, a cancel or an expiry gives the images back. */
  refund: boolean;
  /** Rule: a job costs the sum of its attempts, failed ones included (the ledger keeps one row each). */
  costUsd: number;
  attempts: Attempt[];
  result: JobResult | null;
  errorCode: FailureCode | null;
  errorMessage: string | null;
}

export function settlement(outcome: SettleOutcome): Settlement {
  const attempts = outcome.status === 'succeeded' ? outcome.result.attempts : outcome.attempts;
  return {
    status: outcome.status,
    refund: outcome.status !== 'succeeded',
    costUsd: attempts.reduce((s, a) => s + a.costUsd, 0),
    attempts,
    result: outcome.status === 'succeeded' ? outcome.result : null,
    errorCode: outcome.status === 'failed' ? outcome.code : null,
    errorMessage: outcome.status === 'failed' ? outcome.message : null,
  };
}
