import { describe, expect, test } from 'vitest';
import { createCancel } from '../../../bot/jobs/cancel.js';
import type { JobResult } from '../../../core/generation.js';
import type { EarlierTries, SettleOutcome } from '../../../core/settle.js';

const BILLED = [{ backend: 'replicate', outcome: 'failed' as const, seconds: 4, costUsd: 0.02 }];
const RESULT: JobResult = {
  backend: 'replicate',
  seed: 1,
  width: 64,
  height: 64,
  imageKeys: ['p:img:j1:0'],
  runMs: 3000,
  costUsd: 0.035,
  attempts: [...BILLED, { backend: 'replicate', outcome: 'succeeded', seconds: 3, costUsd: 0.015 }],
};

/**
 * `state`: what BullMQ says each time the job is looked at (the last one repeats). The store
 * settles once, like the status-guarded statement; `settledFirst` plays the worker's outcome
 * recorded before the cancel's.
 */
function setup(
  state: string | string[] | undefined,
  o: { removeFails?: boolean; tries?: EarlierTries; settledFirst?: boolean; returnvalue?: unknown } = {},
) {
  const states = typeof state === 'string' ? [state] : state;
  const settled: SettleOutcome[] = [];
  const flagged: string[] = [];
  const removed: string[] = [];
  const cancel = createCancel({
    queue: {
      async getJob(jobId) {
        if (states === undefined) return undefined;
        const now = states.length > 1 ? states.shift()! : states[0]!;
        return {
          returnvalue: o.returnvalue ?? null,
          getState: async () => now,
          async remove() {
            if (o.removeFails) throw new Error('job is locked');
            removed.push(jobId);
          },
        };
      },
    },
    settle: async (_jobId, outcome) => {
      if (o.settledFirst) return false;
      settled.push(outcome);
      return true;
    },
    requestCancel: async (jobId) => void flagged.push(jobId),
    earlierTries: async () => o.tries ?? { failure: null, keptAttempts: null },
  });
  return { cancel, settled, flagged, removed };
}

describe('cancelling a job', () => {
  test('a job no worker has taken leaves the queue and is settled as cancelled (refunded) at once', async () => {
    const s = setup('prioritized');
    expect(await s.cancel('j1')).toBe('cancelled');
    expect(s.removed).toEqual(['j1']);
    expect(s.settled).toEqual([{ status: 'cancelled', attempts: [] }]);
    expect(s.flagged).toEqual([]);
  });

  test('a running job is flagged for the worker holding it, which interrupts its backend', async () => {
    const s = setup('active');
    expect(await s.cancel('j1')).toBe('cancelling');
    expect(s.flagged).toEqual(['j1']);
    expect(s.settled).toEqual([]);
  });

  test('a job a worker picked up between the check and the removal is flagged instead', async () => {
    const s = setup('waiting', { removeFails: true });
    expect(await s.cancel('j1')).toBe('cancelling');
    expect(s.flagged).toEqual(['j1']);
    expect(s.settled).toEqual([]);
  });

  test('a job the queue no longer knows (lost entry) is settled as cancelled', async () => {
    const s = setup(undefined);
    expect(await s.cancel('j1')).toBe('cancelled');
    expect(s.settled).toHaveLength(1);
  });

  test('a retry waiting out its backoff keeps what its first run billed: the cancel books the failure record’s attempts', async () => {
    const s = setup('delayed', { tries: { failure: { code: 'all_backends_failed', message: 'x', attempts: BILLED }, keptAttempts: null } });
    expect(await s.cancel('j1')).toBe('cancelled');
    expect(s.removed).toEqual(['j1']);
    expect(s.settled).toEqual([{ status: 'cancelled', attempts: BILLED }]);
  });

  test('a job back in the queue after a paid result was kept books that result’s attempts', async () => {
    const s = setup('waiting', { tries: { failure: null, keptAttempts: RESULT.attempts } });
    expect(await s.cancel('j1')).toBe('cancelled');
    expect(s.settled).toEqual([{ status: 'cancelled', attempts: RESULT.attempts }]);
  });

  test('a job BullMQ completed but the bot has not settled is settled as cancelled with its run’s attempts: refunded, nothing posted', async () => {
    const s = setup('completed', { returnvalue: RESULT });
    expect(await s.cancel('j1')).toBe('cancelled');
    expect(s.settled).toEqual([{ status: 'cancelled', attempts: RESULT.attempts }]);
    // Settling lets go of it in BullMQ; a failed settle must not lose the result.
    expect(s.removed).toEqual([]);
  });

  test('a job that failed for good but is not settled yet is settled as cancelled, its attempts booked', async () => {
    const s = setup('failed', { tries: { failure: { code: 'all_backends_failed', message: 'x', attempts: BILLED }, keptAttempts: null } });
    expect(await s.cancel('j1')).toBe('cancelled');
    expect(s.settled).toEqual([{ status: 'cancelled', attempts: BILLED }]);
  });

  test('a job its guild’s worker gave back, about to move to the shared queue, is flagged rather than settled under the move', async () => {
    const s = setup('failed', { tries: { failure: { code: 'handed_back', message: 'x', attempts: [] }, keptAttempts: null } });
    expect(await s.cancel('j1')).toBe('cancelling');
    expect(s.flagged).toEqual(['j1']);
    expect(s.settled).toEqual([]);
  });

  test('a running job that finished between the look and the flag is settled by the cancel when it looks again', async () => {
    const s = setup(['active', 'completed'], { returnvalue: RESULT });
    expect(await s.cancel('j1')).toBe('cancelled');
    expect(s.flagged).toEqual(['j1']);
    expect(s.settled).toEqual([{ status: 'cancelled', attempts: RESULT.attempts }]);
  });

  test('a cancel that lost the race to the job’s own outcome says the job already finished, not that it was cancelled', async () => {
    expect(await setup('completed', { returnvalue: RESULT, settledFirst: true }).cancel('j1')).toBe('finished');
    expect(await setup('delayed', { settledFirst: true }).cancel('j1')).toBe('finished');
    expect(await setup(['active', 'completed'], { returnvalue: RESULT, settledFirst: true }).cancel('j1')).toBe('finished');
  });
});
