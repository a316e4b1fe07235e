import { Redis } from 'ioredis';
import { afterAll } from 'vitest';
import { budgetMonth, budgetMonthExpiresAt, LEAST_CAPPED_RUN_S, reservationWanted } from '../../core/budget.js';
import { BudgetReservations } from '../../core/io/budget-reservations.js';
import { REPLICATE_CANCEL_MARGIN_MS, REPLICATE_POLL_MS } from '../../worker/backends/replicate.js';
import { describe, expect, test } from '../setup/fixtures.js';

const url = process.env.TEST_REDIS_URL || 'redis://127.0.0.1:6379';
// Several connections, as several worker processes would hold.
const conns = Array.from({ length: 4 }, () => new Redis(url));
afterAll(() => Promise.all(conns.map((c) => c.quit())));

const MONTH = '2026-12';
const seed = { limitUsd: 0.05, settledUsd: 0 };

describe('budget reservations (one Lua script per change, real Redis)', () => {
  test('200 attempts racing from four connections for a $0.05 month at $0.01 each: exactly five are reserved, the rest are held, none spent', async ({
    redisPrefix,
  }) => {
    const stores = conns.map((c) => new BudgetReservations(c, redisPrefix));
    const answers = await Promise.all(
      Array.from({ length: 200 }, (_, i) =>
        stores[i % stores.length]!.reserve('g', MONTH, `job${i}:0:0`, { wantUsd: 0.01, leastUsd: 0.01, seed }),
      ),
    );
    const reserved = answers.filter((a) => a.kind === 'reserved');
    expect(reserved).toHaveLength(5);
    expect(answers.filter((a) => a.kind === 'held')).toHaveLength(195);
    const state = await stores[0]!.read('g', MONTH);
    expect(state).toEqual({ limitUsd: 0.05, settledUsd: 0, reservedUsd: 0.05, open: 5 });

    // Each billed less than it set aside: room frees up for exactly what is left.
    const winners = answers.flatMap((a, i) => (a.kind === 'reserved' ? [i] : []));
    await Promise.all(winners.map((i) => stores[0]!.settle('g', MONTH, `job${i}:0:0`, 0.008)));
    expect(await stores[1]!.read('g', MONTH)).toEqual({ limitUsd: 0.05, settledUsd: 0.04, reservedUsd: 0, open: 0 });
    expect(await stores[2]!.reserve('g', MONTH, 'late:0:0', { wantUsd: 0.01, leastUsd: 0.01, seed })).toEqual({
      kind: 'reserved',
      usd: 0.01,
    });
    // Settled spend leaves no room for even the least: spent, not held.
    expect(await stores[3]!.reserve('g', MONTH, 'later:0:0', { wantUsd: 0.01, leastUsd: 0.01, seed })).toEqual({ kind: 'held' });
    await stores[0]!.settle('g', MONTH, 'late:0:0', 0.01);
    expect(await stores[3]!.reserve('g', MONTH, 'later:0:0', { wantUsd: 0.01, leastUsd: 0.01, seed })).toEqual({ kind: 'spent' });
  });

  test('near the end an attempt takes what is left if that covers its estimate; the same attempt asking again gets what it holds', async ({
    redisPrefix,
  }) => {
    const b = new BudgetReservations(conns[0]!, redisPrefix);
    const want = reservationWanted(0.02, 0.000975);
    expect(want).toEqual({ wantUsd: 0.04, leastUsd: 0.02 });
    expect(await b.reserve('g', MONTH, 'a', { ...want, seed })).toEqual({ kind: 'reserved', usd: 0.04 });
    expect(await b.reserve('g', MONTH, 'b', { wantUsd: 0.04, leastUsd: 0.01, seed })).toEqual({ kind: 'reserved', usd: 0.01 });
    expect(await b.reserve('g', MONTH, 'a', { ...want, seed })).toEqual({ kind: 'reserved', usd: 0.04 });
    expect((await b.read('g', MONTH))?.reservedUsd).toBe(0.05);
  });

  test('a time-billed attempt sets aside at least the run time its cap can be held to, however fast the last runs were', () => {
    // The last runs took 0.2 s at $0.000975/s: twice that would be cut one poll and a cancel's round trip early, before it could run.
    const want = reservationWanted(0.2 * 0.000975, 0.000975);
    expect(want.leastUsd / 0.000975).toBeCloseTo(LEAST_CAPPED_RUN_S, 6);
    expect(want.wantUsd / 0.000975).toBeCloseTo(LEAST_CAPPED_RUN_S, 6);
    expect(LEAST_CAPPED_RUN_S * 1000).toBeGreaterThan(REPLICATE_POLL_MS + REPLICATE_CANCEL_MARGIN_MS);
    // Billed per image: the price is exact.
    expect(reservationWanted(0.003, undefined)).toEqual({ wantUsd: 0.003, leastUsd: 0.003 });
  });

  test('the bot seeds the month from Postgres once and then only refreshes the limit; a lost hash is re-seeded by the next reservation, and it expires after the month', async ({
    redisPrefix,
  }) => {
    const b = new BudgetReservations(conns[0]!, redisPrefix);
    await b.seed('g', MONTH, 1, 0.3);
    await b.reserve('g', MONTH, 'x', { wantUsd: 0.1, leastUsd: 0.1, seed });
    await b.settle('g', MONTH, 'x', 0.12);
    // A moderator lowers the budget: spend so far stays, the limit changes.
    await b.seed('g', MONTH, 0.4, 0);
    expect(await b.read('g', MONTH)).toEqual({ limitUsd: 0.4, settledUsd: 0.42, reservedUsd: 0, open: 0 });
    expect(await b.reserve('g', MONTH, 'y', { wantUsd: 0.01, leastUsd: 0.01, seed })).toEqual({ kind: 'spent' });
    const ttl = await conns[0]!.ttl(b.key('g', MONTH));
    expect(ttl).toBeGreaterThan(0);
    expect(Date.now() / 1000 + ttl).toBeCloseTo(budgetMonthExpiresAt(MONTH), -1);

    await conns[0]!.del(b.key('g', MONTH));
    expect(await b.reserve('g', MONTH, 'z', { wantUsd: 0.01, leastUsd: 0.01, seed: { limitUsd: 0.05, settledUsd: 0.045 } })).toEqual({
      kind: 'spent',
    });
    expect(await b.read('g', MONTH)).toEqual({ limitUsd: 0.05, settledUsd: 0.045, reservedUsd: 0, open: 0 });
  });
});

describe('budget seeding at admission', () => {
  test('a burst of one guild seeds once; a new limit is applied at once, and the same limit is sent again after 10 s', async ({
    redisPrefix,
  }) => {
    const b = new BudgetReservations(conns[0]!, redisPrefix);
    const key = b.key('g', MONTH);
    const t0 = 1_000_000;
    await b.seedForAdmission('g', MONTH, 1, 0, t0);
    // Another writer (as a stand-in) changes the hash: admissions with the same limit inside the window leave it alone.
    await conns[0]!.hset(key, 'limit', 7);
    await Promise.all(Array.from({ length: 50 }, (_, i) => b.seedForAdmission('g', MONTH, 1, 0, t0 + i)));
    expect(await conns[0]!.hget(key, 'limit')).toBe('7');
    // A moderator's new budget reaches admission as a new limit: sent at once.
    await b.seedForAdmission('g', MONTH, 2, 0, t0 + 100);
    expect((await b.read('g', MONTH))?.limitUsd).toBe(2);
    // Past the window the same limit is sent again.
    await conns[0]!.hset(key, 'limit', 7);
    await b.seedForAdmission('g', MONTH, 2, 0, t0 + 100 + 10_000);
    expect((await b.read('g', MONTH))?.limitUsd).toBe(2);
    // Another guild, or the next month, is its own seed.
    await b.seedForAdmission('h', MONTH, 3, 0, t0 + 200);
    expect((await b.read('h', MONTH))?.limitUsd).toBe(3);
  });
});

describe('budget rules', () => {
  test('the month a reservation falls in is the UTC month; its hash outlives it by two days', () => {
    expect(budgetMonth(new Date('2026-12-31T23:59:59Z'))).toBe('2026-12');
    expect(budgetMonth(new Date('2027-01-01T00:00:00Z'))).toBe('2027-01');
    expect(budgetMonthExpiresAt('2026-12')).toBe(Date.UTC(2027, 0, 3) / 1000);
  });
});
