import { parseJobResult } from '../../core/generation.js';
import { cancelledUnheld, completedOutcome, type EarlierTries, type SettleOutcome } from '../../core/settle.js';

export interface CancelOptions {
  /** BullMQ's view of the job: its state, its result once completed, and removing it while no worker holds it. */
  queue: { getJob(jobId: string): Promise<{ getState(): Promise<string>; remove(): Promise<void>; returnvalue: unknown } | undefined> };
  /** Settles the job and posts what it became (JobLifecycle.settle); false when another outcome was recorded first. */
  settle: (jobId: string, outcome: SettleOutcome) => Promise<boolean>;
  /** Flags the job cancelled and tells every worker (core/io/cancel.ts requestCancel). */
  requestCancel: (jobId: string) => Promise<void>;
  /** What the job's earlier tries billed (ResultStore.earlierTries, in the space that holds it). */
  earlierTries: (jobId: string) => Promise<EarlierTries>;
}

/** What the member is told: done and refunded; under way; or too late, the job's own outcome stands. */
export type CancelAnswer = 'cancelled' | 'cancelling' | 'finished';

/**
 * Cancelling a job. One no worker holds (still queued, a retry waiting out its backoff, handed
 * back, or finished but not yet settled) is settled as cancelled at once: refunded, what its runs
 * billed booked. One running is flagged: the worker holding it interrupts its backend and the job
 * ends through its `failed` event as cancelled; should it complete anyway, the bot reads the flag
 * with its images and settles it as cancelled (JobLifecycle).
 */
export function createCancel(o: CancelOptions): (jobId: string) => Promise<CancelAnswer> {
  /** Settles the job as cancelled unless a worker holds it (null then). */
  async function settleUnheld(jobId: string): Promise<'cancelled' | 'finished' | null> {
    const job = await o.queue.getJob(jobId);
    const state = job ? await job.getState() : null;
    if (state === 'active') return null;
    let outcome: SettleOutcome;
    if (job && state === 'completed') {
      // Left in BullMQ until the settle below lets go of it: a settle that fails loses no result.
      outcome = completedOutcome(parseJobResult(job.returnvalue), false, true);
    } else {
      const tries = await o.earlierTries(jobId);
      // Its guild's worker gave it back and the bot is moving it to the shared queue: a settle here
      // could race the move, so it is flagged like a running job.
      if (state === 'failed' && tries.failure?.code === 'handed_back') return null;
      if (job && state !== 'failed') {
        try {
          await job.remove();
        } catch {
          return null; // picked up by a worker meanwhile
        }
      }
      outcome = cancelledUnheld(tries);
    }
    return (await o.settle(jobId, outcome)) ? 'cancelled' : 'finished';
  }

  return async (jobId) => {
    const unheld = await settleUnheld(jobId);
    if (unheld) return unheld;
    await o.requestCancel(jobId);
    // The worker may have ended the job between the look and the flag, past its last look at the
    // flag: looked at again after the flag is set, a job that finished is settled here, so the bot
    // settling its result reads the flag, or this settle's statement races its own (one stands).
    return (await settleUnheld(jobId)) ?? 'cancelling';
  };
}
