import pg from 'pg';
import { describe, expect } from 'vitest';
import { PgJobStore } from '../../bot/store/jobs.js';
import { StatsStore } from '../../bot/store/stats.js';
import { parseImagineOptions } from '../../core/generation.js';
import type { ReserveInput } from '../../core/ports.js';
import { QUOTA_CASES, TODAY } from '../fixtures/quota-cases.js';
import { SETTLE_CASES } from '../fixtures/settle-cases.js';
import { test } from '../setup/fixtures.js';
import { databaseBefore } from '../setup/upgrade.js';

/** The ledger's rows are booked at the database's now(), so the month they count in is today's. */
const THIS_MONTH = `${new Date().toISOString().slice(0, 7)}-01`;
const actor = { guildId: '2222222222222222222', channelId: '4444444444444444444', userId: '3333333333333333333', channelNsfw: false };

function input(over: Partial<ReserveInput> = {}, count = 1): ReserveInput {
  return {
    actor,
    interaction: { applicationId: '1111111111111111111', interactionId: String(Math.random()), token: 'tok' },
    request: parseImagineOptions({ prompt: 'x', count }),
    day: '2026-11-23',
    deploymentDailyLimit: 3,
    maxInFlight: 50,
    monthStart: '2026-11-01',
    deploymentMonthlyBudgetUsd: 5,
    ...over,
  };
}

const result = (n = 1) => ({
  backend: 'a1111',
  seed: 1,
  width: 1024,
  height: 1024,
  imageKeys: Array.from({ length: n }, (_, i) => `k${i}`),
  runMs: 10,
  costUsd: 0.01,
  attempts: [
    { backend: 'replicate', outcome: 'failed' as const, seconds: 1, costUsd: 0.002 },
    { backend: 'a1111', outcome: 'succeeded' as const, seconds: 2, costUsd: 0.008 },
  ],
});

describe('PgJobStore', () => {
  test("the month's budget spend counts paid providers only: a failed Replicate attempt does, the GPU box's hour price does not", async ({
    db,
  }) => {
    const store = new PgJobStore(db.pool);
    const r = await store.reserve(input({ monthStart: THIS_MONTH }));
    if (!r.ok) throw new Error('not admitted');
    await store.settle(r.jobId, { status: 'succeeded', result: result() });
    const next = await store.reserve(input({ monthStart: THIS_MONTH }));
    if (!next.ok) throw new Error('not admitted');
    expect(next.spentUsd).toBeCloseTo(0.002, 6);
    expect(next.budgetLeftUsd).toBeCloseTo(5 - 0.002, 6);
    expect(await new StatsStore(db.pool).spentInMonth(actor.guildId, THIS_MONTH)).toBeCloseTo(0.002, 6);
  });

  test("the member's row keeps yesterday's images beside today's, and a refund after midnight gives yesterday's back", async ({ db }) => {
    const store = new PgJobStore(db.pool);
    const admit = async (day: string, count: number) => {
      const r = await store.reserve(input({ deploymentDailyLimit: 100, day }, count));
      if (!r.ok) throw new Error('not admitted');
      return r;
    };
    const kept = await admit('2026-11-22', 2);
    const failedLater = await admit('2026-11-22', 3);
    await store.settle(kept.jobId, { status: 'succeeded', result: result(2) });
    // The next day: yesterday's 5 images are remembered beside today's.
    const today = await admit('2026-11-23', 1);
    expect([today.usedToday, today.prevDayImages]).toEqual([1, 5]);
    // Yesterday's second job fails after midnight: refunded on the day it was counted on.
    await store.settle(failedLater.jobId, { status: 'failed', code: 'all_backends_failed', message: 'down', attempts: [] });
    const again = await admit('2026-11-23', 1);
    expect([again.usedToday, again.prevDayImages]).toEqual([2, 2]);
    // Two days on, yesterday is the 23rd: its 2 images; the 22nd counts no more.
    const later = await admit('2026-11-24', 1);
    expect([later.usedToday, later.prevDayImages]).toEqual([1, 2]);
    const muchLater = await admit('2026-11-27', 1);
    expect([muchLater.usedToday, muchLater.prevDayImages]).toEqual([1, 0]);
  });

  test('ten parallel reservations with three images left admit exactly three', async ({ db }) => {
    const store = new PgJobStore(db.pool);
    const outcomes = await Promise.all(Array.from({ length: 10 }, () => store.reserve(input())));
    expect(outcomes.filter((o) => o.ok)).toHaveLength(3);
    expect(await db.prisma.job.count()).toBe(3);
    expect((await db.prisma.memberUsage.findFirstOrThrow()).images).toBe(3);
  });

  test('the in-flight cap holds under parallel requests too', async ({ db }) => {
    const store = new PgJobStore(db.pool);
    const outcomes = await Promise.all(
      Array.from({ length: 8 }, () => store.reserve(input({ deploymentDailyLimit: 100, maxInFlight: 2 }))),
    );
    expect(outcomes.filter((o) => o.ok)).toHaveLength(2);
    expect(outcomes.filter((o) => !o.ok && o.reason === 'in_flight').length).toBeGreaterThan(0);
  });

  test('settling twice charges once and books the attempts once; the job cost equals the ledger sum', async ({ db }) => {
    const store = new PgJobStore(db.pool);
    const r = await store.reserve(input({}, 2));
    if (!r.ok) throw new Error('not admitted');
    const first = await store.settle(r.jobId, { status: 'succeeded', result: result(2) });
    const second = await store.settle(r.jobId, { status: 'failed', code: 'rejected', message: 'y', attempts: [] });
    expect(first?.status).toBe('succeeded');
    expect(second).toBeNull();
    expect((await db.prisma.memberUsage.findFirstOrThrow()).images).toBe(2);
    const ledger = await db.prisma.costLedger.findMany();
    expect(ledger).toHaveLength(2);
    const job = await db.prisma.job.findFirstOrThrow();
    expect(Number(job.costUsd)).toBeCloseTo(
      ledger.reduce((s, l) => s + Number(l.costUsd), 0),
      6,
    );
  });

  test('a failure refunds the images and frees the in-flight slot; a blocked member (override 0) is refused', async ({ db }) => {
    const store = new PgJobStore(db.pool);
    const r = await store.reserve(input({}, 3));
    if (!r.ok) throw new Error('not admitted');
    expect((await store.reserve(input())).ok).toBe(false);
    await store.settle(r.jobId, { status: 'failed', code: 'all_backends_failed', message: 'down', attempts: [] });
    expect(await db.prisma.memberUsage.findFirstOrThrow()).toMatchObject({ images: 0, inFlight: 0 });
    await db.prisma.userQuotaOverride.create({ data: { guildId: actor.guildId, userId: actor.userId, dailyLimit: 0, setBy: 'mod' } });
    const blocked = await store.reserve(input());
    expect(blocked).toMatchObject({ ok: false, reason: 'blocked' });
  });

  test('a new UTC day starts from zero; yesterday’s refund does not touch today', async ({ db }) => {
    const store = new PgJobStore(db.pool);
    const y = await store.reserve(input({ day: '2026-11-22' }, 3));
    expect((await store.reserve(input({ day: '2026-11-22' }))).ok).toBe(false);
    const t = await store.reserve(input({ day: '2026-11-23' }, 2));
    expect(t.ok).toBe(true);
    if (!y.ok) throw new Error('not admitted');
    await store.settle(y.jobId, { status: 'failed', code: 'rejected', message: 'y', attempts: [] });
    expect((await db.prisma.memberUsage.findFirstOrThrow()).images).toBe(2);
  });

  test('a result given up as undeliverable refunds a success once, keeps the ledger, erases the token and leaves the sweep', async ({
    db,
  }) => {
    const store = new PgJobStore(db.pool);
    const r = await store.reserve(input({}, 2));
    if (!r.ok) throw new Error('not admitted');
    await store.settle(r.jobId, { status: 'succeeded', result: result(2) });
    expect((await db.prisma.memberUsage.findFirstOrThrow()).images).toBe(2);
    await store.deferDelivery(r.jobId, 1, new Date(Date.now() + 60_000), '403 50013 Missing Permissions');
    expect(await store.listUndelivered(null, 10)).toEqual([]); // its next try is not due yet
    expect(await store.claimDelivery(r.jobId, 0)).toBeNull();
    const given = await store.giveUpDelivery(r.jobId, '403 50013 Missing Permissions');
    expect(given).toMatchObject({ id: r.jobId, status: 'succeeded', imageCount: 2 });
    expect(await store.giveUpDelivery(r.jobId, 'again')).toBeNull();
    const row = await db.prisma.job.findUniqueOrThrow({ where: { id: r.jobId } });
    expect(row).toMatchObject({ status: 'failed', errorCode: 'undeliverable', interactionToken: null, deliveryAttempts: 2 });
    expect(row.undeliverableAt).not.toBeNull();
    expect((await db.prisma.memberUsage.findFirstOrThrow()).images).toBe(0);
    expect((await db.prisma.costLedger.aggregate({ _sum: { costUsd: true } }))._sum.costUsd?.toString()).toBe('0.01');
    expect(await store.listUndelivered(null, 10)).toEqual([]);
  });

  test('a success whose images expired before posting becomes a refunded failure once; the ledger stays; a delivered or failed job is left alone', async ({
    db,
  }) => {
    const store = new PgJobStore(db.pool);
    const r = await store.reserve(input({}, 2));
    const other = await store.reserve(input({}, 1));
    if (!r.ok || !other.ok) throw new Error('not admitted');
    await store.settle(r.jobId, { status: 'succeeded', result: result(2) });
    await store.settle(other.jobId, { status: 'failed', code: 'rejected', message: 'no', attempts: [] });
    expect((await db.prisma.memberUsage.findFirstOrThrow()).images).toBe(2);
    expect(await store.expireResult(r.jobId)).toMatchObject({ id: r.jobId, status: 'failed', errorCode: 'expired' });
    expect(await store.expireResult(r.jobId)).toBeNull();
    expect(await store.expireResult(other.jobId)).toBeNull();
    expect((await db.prisma.memberUsage.findFirstOrThrow()).images).toBe(0);
    expect((await db.prisma.costLedger.aggregate({ _sum: { costUsd: true } }))._sum.costUsd?.toString()).toBe('0.01');

    const d = await store.reserve(input({}, 1));
    if (!d.ok) throw new Error('not admitted');
    await store.settle(d.jobId, { status: 'succeeded', result: result(1) });
    await store.markDelivered([{ jobId: d.jobId, messageId: 'm1' }]);
    expect(await store.expireResult(d.jobId)).toBeNull();
    expect((await db.prisma.memberUsage.findFirstOrThrow()).images).toBe(1);
  });

  test('a success whose stored images the output limits refuse becomes a refunded failure as malformed, with its reason', async ({
    db,
  }) => {
    const store = new PgJobStore(db.pool);
    const r = await store.reserve(input({}, 2));
    if (!r.ok) throw new Error('not admitted');
    await store.settle(r.jobId, { status: 'succeeded', result: result(2) });
    const message = 'the images the worker returned were refused (image 1 declares 6000×6000, over the 16 MP cap).';
    expect(await store.expireResult(r.jobId, { code: 'invalid_payload', message })).toMatchObject({
      status: 'failed',
      errorCode: 'invalid_payload',
      errorMessage: message,
    });
    expect((await db.prisma.memberUsage.findFirstOrThrow()).images).toBe(0);
  });

  test('the sweep pages through open jobs oldest first by (created_at, id); delivered ones are not in it and lose their token', async ({
    db,
  }) => {
    const store = new PgJobStore(db.pool);
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      const r = await store.reserve(input({ deploymentDailyLimit: 100 }));
      if (!r.ok) throw new Error('not admitted');
      ids.push(r.jobId);
    }
    await store.settle(ids[0]!, { status: 'succeeded', result: result() });
    await store.markDelivered([{ jobId: ids[0]!, messageId: 'm1' }]);
    expect((await db.prisma.job.findUniqueOrThrow({ where: { id: ids[0]! } })).interactionToken).toBeNull();
    const first = await store.listUndelivered(null, 2);
    const second = await store.listUndelivered({ createdAt: first[1]!.createdAt, id: first[1]!.id }, 2);
    const third = await store.listUndelivered({ createdAt: second[1]!.createdAt, id: second[1]!.id }, 2);
    expect([...first, ...second, ...third].map((j) => j.id).sort()).toEqual(ids.slice(1).sort());
    expect(third).toHaveLength(0);
  });

  test('recent run times for the queue ETA: delivered successes only, newest first, with image count and backend', async ({ db }) => {
    const store = new PgJobStore(db.pool);
    const ids: string[] = [];
    for (const [count, runMs] of [
      [1, 1000],
      [2, 2000],
      [4, 4000],
      [1, 5000],
    ] as const) {
      const r = await store.reserve(input({ deploymentDailyLimit: 100, day: new Date().toISOString().slice(0, 10) }, count));
      if (!r.ok) throw new Error('not admitted');
      ids.push(r.jobId);
      await store.settle(r.jobId, { status: 'succeeded', result: { ...result(count), runMs } });
    }
    const failed = await store.reserve(input({ deploymentDailyLimit: 100 }));
    if (!failed.ok) throw new Error('not admitted');
    await store.settle(failed.jobId, { status: 'failed', code: 'rejected', message: 'y', attempts: [] });
    await store.markDelivered([{ jobId: failed.jobId, messageId: null }]);
    // Delivered in this order; the last one is settled but not delivered yet.
    for (const [n, id] of ids.slice(0, 3).entries()) {
      await store.markDelivered([{ jobId: id, messageId: null }]);
      // Distinct times whatever the clock's resolution.
      await db.prisma.$executeRawUnsafe(`UPDATE jobs SET delivered_at = now() + make_interval(secs => $2) WHERE id = $1::uuid`, id, n);
    }
    expect(await store.recentRunTimes(10)).toEqual([
      { ms: 4000, count: 4, backend: 'a1111' },
      { ms: 2000, count: 2, backend: 'a1111' },
      { ms: 1000, count: 1, backend: 'a1111' },
    ]);
    expect(await store.recentRunTimes(2)).toHaveLength(2);
    // A result row without a usable runMs is skipped, not an error.
    await db.prisma.$executeRawUnsafe(`UPDATE jobs SET result = result - 'runMs' WHERE id = $1::uuid`, ids[0]!);
    expect((await store.recentRunTimes(10)).map((r) => r.ms)).toEqual([4000, 2000]);
  });
});

describe('the reservation statement (the same cases core/quota.ts admission runs)', () => {
  test.for(QUOTA_CASES)('$rule', async (c, { db }) => {
    const { guildId, userId } = actor;
    if (c.facts.guildDefault !== null) await db.prisma.guildSettings.create({ data: { guildId, dailyLimit: c.facts.guildDefault } });
    if (c.facts.userOverride !== null)
      await db.prisma.userQuotaOverride.create({ data: { guildId, userId, dailyLimit: c.facts.userOverride, setBy: 'mod' } });
    if (c.facts.usage)
      await db.prisma.memberUsage.create({
        data: {
          guildId,
          userId,
          day: new Date(`${c.facts.usage.day}T00:00:00Z`),
          images: c.facts.usage.images,
          inFlight: c.facts.usage.inFlight,
        },
      });
    const store = new PgJobStore(db.pool);
    const outcome = await store.reserve(
      input({ day: TODAY, deploymentDailyLimit: c.settings.deploymentDailyLimit, maxInFlight: c.settings.maxInFlight }, c.asked),
    );
    if (c.expected.ok) {
      expect(outcome.ok).toBe(true);
      expect((await db.prisma.memberUsage.findFirstOrThrow()).images).toBe(c.expected.usedAfter);
      expect(await db.prisma.job.count()).toBe(1);
    } else {
      expect(outcome).toMatchObject({ ok: false, reason: c.expected.reason });
      expect(await db.prisma.job.count()).toBe(0);
    }
  });
});

describe('the settle statement (the same cases core/settle.ts settlement runs)', () => {
  test.for(SETTLE_CASES)('$rule', async (c, { db }) => {
    const store = new PgJobStore(db.pool);
    const r = await store.reserve(input({}, 2));
    if (!r.ok) throw new Error('not admitted');
    const settled = await store.settle(r.jobId, c.outcome);
    expect(settled?.status).toBe(c.outcome.status);
    expect(await db.prisma.memberUsage.findFirstOrThrow()).toMatchObject({ images: c.charged ? 2 : 0, inFlight: 0 });
    expect(Number((await db.prisma.job.findFirstOrThrow()).costUsd)).toBeCloseTo(c.costUsd, 6);
    expect(await db.prisma.costLedger.count()).toBe(c.ledgerRows);
  });
});

describe("upgrading to yesterday's count on the member's row", () => {
  test("fills it from the day before's jobs that were not refunded, so turns right after the upgrade already count them", async () => {
    const older = await databaseBefore('member_recent_images');
    const pool = new pg.Pool({ connectionString: older.url });
    try {
      await pool.query(`INSERT INTO member_usage (guild_id, user_id, day, images, in_flight) VALUES ('g', 'u', '2026-11-23', 1, 1)`);
      await pool.query(`
        INSERT INTO jobs (guild_id, channel_id, user_id, kind, status, params, image_count, day, application_id, interaction_id)
        VALUES ('g', 'c', 'u', 'txt2img', 'succeeded', '{}', 4, '2026-11-22', 'a', 'kept'),
               ('g', 'c', 'u', 'txt2img', 'failed', '{}', 2, '2026-11-22', 'a', 'refunded'),
               ('g', 'c', 'u', 'txt2img', 'succeeded', '{}', 8, '2026-11-21', 'a', 'too old'),
               ('g', 'c', 'u', 'txt2img', 'queued', '{}', 1, '2026-11-23', 'a', 'today')`);
      await older.upgrade();
      const { rows } = await pool.query<{ images: number; prev_images: number }>('SELECT images, prev_images FROM member_usage');
      expect(rows).toEqual([{ images: 1, prev_images: 4 }]);
    } finally {
      await pool.end();
      await older.drop();
    }
  });
});
