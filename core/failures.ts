import { z } from 'zod';
import { attemptSchema } from './generation.js';

/**
 * Why a job ended without images: one list for the worker that reports it, the Redis record that
 * carries it, the ledger row that keeps it and the message a member reads (core/messages.ts
 * `failureText` has one text per code; leaving one out is a compile error).
 */
export const FAILURE_CODES = [
  /** Every backend was down, busy or open-circuited (after BullMQ's retries). */
  'all_backends_failed',
  /** A backend refused the request itself (4xx); another try would be refused too. */
  'rejected',
  /** The backend or our classifier flagged the image; never shopped around. */
  'unsafe',
  'cancelled',
  /** The payload or the worker's result did not parse. */
  'invalid_payload',
  /** Only paid backends could serve and the guild's budget is spent. */
  'budget_spent',
  /** No configured backend can do this kind of job at this size. */
  'unsupported',
  /** The images were made but left Redis before they could be posted. */
  'expired',
  /** The job could not be put in the queue; nothing ran. */
  'queue_unavailable',
  /** Still unfinished past the sweep's window (the bot was offline longer than that): given up, refunded. */
  'abandoned',
  /** Its result was made but Discord refused every post (missing permissions, deleted channel). */
  'undeliverable',
  /** Admitted, but its input image could not be fetched or prepared; nothing ran, refunded. */
  'input_rejected',
  /**
   * A guild's own worker could not run the job on any of its boxes: the bot moves it to the shared
   * queue instead of settling it (never a member-visible ending).
   */
  'handed_back',
] as const;
export type FailureCode = (typeof FAILURE_CODES)[number];

/** Why a job failed for good, written by the worker so the bot can tell the member and book the attempts. */
export const jobFailureSchema = z.object({
  code: z.enum(FAILURE_CODES),
  /** Safe to show a member. */
  message: z.string(),
  attempts: z.array(attemptSchema),
});
export type JobFailure = z.infer<typeof jobFailureSchema>;

export function isFailureCode(value: string | null | undefined): value is FailureCode {
  return (FAILURE_CODES as readonly string[]).includes(value ?? '');
}
