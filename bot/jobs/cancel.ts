import { CANCELLED_IN_QUEUE, type SettleOutcome } from '../../core/settle.js';

export interface CancelOptions {
  /** BullMQ's view of the job: its state, and removing it while no worker holds it. */
  queue: { getJob(jobId: string): Promise<{ getState(): Promise<string>; remove(): Promise<void> } | undefined> };
  /** Settles the job and posts what it became (JobLifecycle.settle). */
  settle: (jobId: string, outcome: SettleOutcome) => Promise<void>;
  /** Flags the job cancelled and tells every worker (core/io/cancel.ts requestCancel). */
  requestCancel: (jobId: string) => Promise<void>;
}

/**
 * Cancelling a job. One that no worker has taken yet leaves the queue and is settled as cancelled
 * (refunded) at once. One already running is flagged: the worker holding it interrupts its backend
 * and the job ends through its `failed` event like any other, as cancelled.
 *
 * Returns what the member is told: `cancelled` (done, refunded) or `cancelling` (under way).
 */
export function createCancel(o: CancelOptions): (jobId: string) => Promise<'cancelled' | 'cancelling'> {
  async function removeFromQueue(jobId: string): Promise<boolean> {
    const job = await o.queue.getJob(jobId);
    if (job) {
      const state = await job.getState();
      if (state === 'active' || state === 'completed' || state === 'failed') return false;
      try {
        await job.remove();
      } catch {
        return false; // picked up by a worker meanwhile
      }
    }
    await o.settle(jobId, CANCELLED_IN_QUEUE);
    return true;
  }

  return async (jobId) => {
    if (await removeFromQueue(jobId)) return 'cancelled';
    await o.requestCancel(jobId);
    return 'cancelling';
  };
}
