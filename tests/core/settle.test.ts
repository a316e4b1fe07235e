import { describe, expect, test } from 'vitest';
import { parseJobResult } from '../../core/generation.js';
import { failureText } from '../../core/messages.js';
import { abandoned, cancelledUnheld, completedOutcome, failedOutcome, failureIsFinal, settlement } from '../../core/settle.js';
import { SETTLE_CASES } from '../fixtures/settle-cases.js';

const result = {
  backend: 'a1111',
  seed: 7,
  width: 64,
  height: 64,
  imageKeys: ['k'],
  runMs: 5,
  costUsd: 0.5,
  attempts: [{ backend: 'a1111', outcome: 'succeeded', seconds: 1, costUsd: 0.5 }],
};

describe('the settle policy', () => {
  test('a completed job whose result does not parse fails as malformed, and books nothing', () => {
    expect(completedOutcome(parseJobResult('{"not":"a result"}'), true, false)).toEqual({
      status: 'failed',
      code: 'invalid_payload',
      message: failureText.invalid_payload,
      attempts: [],
    });
    expect(completedOutcome(parseJobResult('not json'), true, false)).toMatchObject({ code: 'invalid_payload' });
  });

  test('a completed job whose images left Redis fails as expired, its attempts still booked', () => {
    expect(completedOutcome(parseJobResult(JSON.stringify(result)), false, false)).toMatchObject({
      status: 'failed',
      code: 'expired',
      attempts: result.attempts,
    });
  });

  test('a completed job whose images the output limits refuse fails as malformed saying why, its attempts still booked', () => {
    expect(completedOutcome(parseJobResult(result), true, false, 'image 1 declares 6000×6000, over the 16 MP cap')).toEqual({
      status: 'failed',
      code: 'invalid_payload',
      message: 'the images the worker returned were refused (image 1 declares 6000×6000, over the 16 MP cap).',
      attempts: result.attempts,
    });
  });

  test('a completed job with its images succeeds with its result', () => {
    expect(completedOutcome(parseJobResult(result), true, false)).toEqual({ status: 'succeeded', result });
  });

  test('a completed job the member cancelled before it was settled is cancelled (refunded, nothing posted), its attempts still booked', () => {
    expect(completedOutcome(parseJobResult(result), true, true)).toEqual({ status: 'cancelled', attempts: result.attempts });
    expect(completedOutcome(parseJobResult(result), false, true)).toEqual({ status: 'cancelled', attempts: result.attempts });
    expect(completedOutcome(parseJobResult('not json'), true, true)).toEqual({ status: 'cancelled', attempts: [] });
    expect(settlement(completedOutcome(parseJobResult(result), true, true))).toMatchObject({ refund: true, costUsd: 0.5, result: null });
  });

  test('a job cancelled or given up between tries keeps what its earlier tries billed: the failure record’s attempts, or a kept paid result’s', () => {
    const billed = [{ backend: 'replicate', outcome: 'failed' as const, seconds: 4, costUsd: 0.02 }];
    const paid = [...billed, { backend: 'replicate', outcome: 'succeeded' as const, seconds: 3, costUsd: 0.015 }];
    const failure = { code: 'all_backends_failed' as const, message: 'x', attempts: billed };
    expect(cancelledUnheld({ failure: null, keptAttempts: null })).toEqual({ status: 'cancelled', attempts: [] });
    expect(cancelledUnheld({ failure, keptAttempts: null })).toEqual({ status: 'cancelled', attempts: billed });
    // A kept paid result lists every attempt up to it, the earlier failure's included: booked once.
    expect(cancelledUnheld({ failure, keptAttempts: paid })).toEqual({ status: 'cancelled', attempts: paid });
    expect(abandoned({ failure, keptAttempts: null })).toEqual({
      status: 'failed',
      code: 'abandoned',
      message: failureText.abandoned,
      attempts: billed,
    });
  });

  test('a failed attempt settles nothing while BullMQ has a retry left; a job in the failed set or gone does', () => {
    expect(failureIsFinal('delayed')).toBe(false);
    expect(failureIsFinal('waiting')).toBe(false);
    expect(failureIsFinal('failed')).toBe(true);
    expect(failureIsFinal(null)).toBe(true);
  });

  test("a final failure takes the worker's code and words; a cancel is a cancel; without a record every backend failed", () => {
    const attempts = [{ backend: 'a1111', outcome: 'failed' as const, seconds: 1, costUsd: 0 }];
    expect(failedOutcome({ code: 'rejected', message: 'refused.', attempts })).toEqual({
      status: 'failed',
      code: 'rejected',
      message: 'refused.',
      attempts,
    });
    expect(failedOutcome({ code: 'cancelled', message: 'x', attempts })).toEqual({ status: 'cancelled', attempts });
    expect(failedOutcome(null)).toEqual({
      status: 'failed',
      code: 'all_backends_failed',
      message: failureText.all_backends_failed,
      attempts: [],
    });
  });
});

describe('charge or refund (the same cases the settle statement runs)', () => {
  test.for(SETTLE_CASES)('$rule', (c) => {
    const s = settlement(c.outcome);
    expect(s.refund).toBe(!c.charged);
    expect(s.costUsd).toBeCloseTo(c.costUsd, 9);
    expect(s.attempts).toHaveLength(c.ledgerRows);
  });
});
