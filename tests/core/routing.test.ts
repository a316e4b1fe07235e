import { describe, expect, test } from 'vitest';
import { bookOnOwnBox } from '../../core/pricing.js';
import { queuePriority, sharedQueuePriority } from '../../core/quota.js';
import { type OwnBoxReport, onlineOwnBoxes, routeJob, sharedBoxesAllowed } from '../../core/routing.js';

const NOW = 1_000_000;
const box = (o: Partial<OwnBoxReport> = {}): OwnBoxReport => ({
  family: 'a1111',
  healthy: true,
  circuit: 'closed',
  at: NOW - 1000,
  box: 'http://box:7860',
  inFlight: 0,
  ...o,
});
const runs = (ms: number, n = 10) => Array.from({ length: n }, () => ({ ms, count: 1 }));

describe("a guild's job goes to its own box first", () => {
  test('an online own box with a short line takes the job', () => {
    expect(routeJob({ reports: [box()], now: NOW, waiting: 1, running: 1, samples: runs(10_000), overflowAfterS: 60 })).toMatchObject({
      to: 'guild',
    });
  });

  test('no own box, a box not heard from for a few seconds, an unhealthy or open-circuited one: the shared queue', () => {
    const route = (reports: OwnBoxReport[]) => routeJob({ reports, now: NOW, waiting: 0, running: 0, samples: [], overflowAfterS: 60 });
    expect(route([])).toEqual({ to: 'shared', why: 'no_own_box' });
    expect(route([box({ at: NOW - 7000 })])).toEqual({ to: 'shared', why: 'no_own_box' });
    expect(route([box({ healthy: false })])).toEqual({ to: 'shared', why: 'no_own_box' });
    expect(route([box({ circuit: 'open' })])).toEqual({ to: 'shared', why: 'no_own_box' });
    expect(route([box({ family: 'replicate' })])).toEqual({ to: 'shared', why: 'no_own_box' });
  });

  test('an expected wait past OVERFLOW_AFTER_S overflows to the shared queue; unknown run times do not', () => {
    const busy = { reports: [box()], now: NOW, waiting: 6, running: 1, overflowAfterS: 60 };
    expect(routeJob({ ...busy, samples: runs(20_000) })).toEqual({ to: 'shared', why: 'own_box_busy' });
    expect(routeJob({ ...busy, samples: [] })).toEqual({ to: 'guild', expectedWaitMs: null });
    // OVERFLOW_AFTER_S=0: never overflow, the own box keeps its guild's jobs.
    expect(routeJob({ ...busy, samples: runs(20_000), overflowAfterS: 0 })).toMatchObject({ to: 'guild' });
  });

  test('two workers reporting one box count it once', () => {
    expect(onlineOwnBoxes([box(), box({ at: NOW - 500 })], NOW)).toBe(1);
  });
});

test('the operator allows every guild on its own boxes, or those it lists', () => {
  expect(sharedBoxesAllowed('*', '1')).toBe(true);
  expect(sharedBoxesAllowed(['1', '2'], '2')).toBe(true);
  expect(sharedBoxesAllowed(['1'], '2')).toBe(false);
});

describe('fairness between guilds on the shared queue', () => {
  test("a guild's k-th waiting job ranks behind every guild's earlier ones, whatever its members' usage", () => {
    // Guild A floods: its second job (k=1) from a fresh member ranks behind guild B's first from a heavy member.
    expect(sharedQueuePriority(1, 0)).toBeGreaterThan(sharedQueuePriority(0, 500));
    expect(sharedQueuePriority(2, 0)).toBeGreaterThan(sharedQueuePriority(1, 998));
  });

  test('inside one turn, the member who has had least goes first, as on a guild queue', () => {
    expect(sharedQueuePriority(0, 0)).toBe(queuePriority(0));
    expect(sharedQueuePriority(3, 2)).toBeLessThan(sharedQueuePriority(3, 7));
  });

  test("stays within BullMQ's priority range", () => {
    expect(sharedQueuePriority(1e9, 1e9)).toBeLessThanOrEqual(2_097_151);
    expect(sharedQueuePriority(-1, 0)).toBeGreaterThanOrEqual(1);
  });
});

describe("prices on a guild's own box", () => {
  const attempts = [
    { backend: 'a1111', outcome: 'failed' as const, seconds: 1800, costUsd: 0.05 },
    { backend: 'a1111', outcome: 'skipped' as const, seconds: 0, costUsd: 0 },
  ];
  test("nothing to the operator nor the budget; each attempt booked at the guild's GPU-hour price", () => {
    const booked = bookOnOwnBox({ status: 'failed', code: 'rejected', message: 'm', attempts }, 2);
    expect(booked).toMatchObject({
      attempts: [
        { costUsd: 0, ownUsd: 1 },
        { costUsd: 0, ownUsd: 0 },
      ],
    });
    const ok = bookOnOwnBox(
      {
        status: 'succeeded',
        result: { backend: 'a1111', seed: 1, width: 64, height: 64, imageKeys: ['k'], runMs: 1, costUsd: 0.05, attempts },
      },
      null,
    );
    expect(ok).toMatchObject({
      result: {
        costUsd: 0,
        attempts: [
          { costUsd: 0, ownUsd: 0 },
          { costUsd: 0, ownUsd: 0 },
        ],
      },
    });
  });
});
