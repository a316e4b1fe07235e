import { describe, expect, test } from 'vitest';
import { createCancel } from '../../../bot/jobs/cancel.js';
import type { SettleOutcome } from '../../../core/settle.js';

function setup(state: string | undefined, o: { removeFails?: boolean } = {}) {
  const settled: SettleOutcome[] = [];
  const flagged: string[] = [];
  const removed: string[] = [];
  const cancel = createCancel({
    queue: {
      async getJob(jobId) {
        if (state === undefined) return undefined;
        return {
          getState: async () => state,
          async remove() {
            if (o.removeFails) throw new Error('job is locked');
            removed.push(jobId);
          },
        };
      },
    },
    settle: async (_jobId, outcome) => void settled.push(outcome),
    requestCancel: async (jobId) => void flagged.push(jobId),
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
});
