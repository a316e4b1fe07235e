import { Redis } from 'ioredis';
import { afterEach, describe, expect } from 'vitest';
import { budgetMonth } from '../../core/budget.js';
import { PERMS } from '../fakes/discord/ids.js';
import type { FakeInteraction, FakeUser } from '../fakes/discord/types.js';
import { type FakeReplicate, startFakeReplicate } from '../fakes/replicate.js';
import { test } from '../setup/fixtures.js';
import { ALICE, GUILD_ID, System } from './harness.js';

let sys: System | undefined;
let closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  await sys?.stop();
  sys = undefined;
  await Promise.all(closers.map((c) => c()));
  closers = [];
});

/** Polls an async condition (the fake's waitFor takes only synchronous ones). */
async function until<T>(fn: () => Promise<T | undefined | null | false>, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const member = (n: number): FakeUser => ({ id: String(6200000000000000000n + BigInt(n)), username: `payer${n}` });

/** A Replicate run bills 5 s at $0.002/s: $0.01 a job, as the fake reports predict_time. */
const PRICE_ENV = { REPLICATE_USD_PER_SECOND: '0.002' };
const JOB_USD = 0.01;

async function replicateOnly(o: {
  db: { url: string };
  redisPrefix: string;
  budget: string;
  fake?: Parameters<typeof startFakeReplicate>[0];
}) {
  const replicate = await startFakeReplicate({ durationMs: 300, predictTimeS: 5, ...o.fake });
  closers.push(() => replicate.close());
  sys = await System.start({
    db: o.db,
    redisPrefix: o.redisPrefix,
    worker: 'none',
    env: {
      BACKENDS: 'replicate',
      REPLICATE_API_TOKEN: 'r8_fake',
      REPLICATE_API_URL: replicate.url,
      REPLICATE_OUTPUT_ORIGINS: replicate.url,
      DEFAULT_MONTHLY_BUDGET_USD: o.budget,
      DEFAULT_DAILY_IMAGES: '10',
      MAX_QUEUED_PER_USER: '5',
      WORKER_CONCURRENCY: '8',
      ...PRICE_ENV,
    },
  });
  return replicate;
}

/** What the guild's paid providers billed, as the ledger books it. */
async function ledger(db: { prisma: { costLedger: { findMany(): Promise<{ backend: string; outcome: string; costUsd: unknown }[]> } } }) {
  const rows = await db.prisma.costLedger.findMany();
  return rows.filter((r) => r.backend.startsWith('replicate')).map((r) => ({ outcome: r.outcome, usd: Number(r.costUsd) }));
}

describe('the monthly budget under load', () => {
  test('21 jobs from 7 members at once against $0.05 with only Replicate: spend stays within the budget plus one job, the rest are told the budget is spent and refunded', async ({
    db,
    redisPrefix,
  }) => {
    const replicate = await replicateOnly({ db, redisPrefix, budget: '0.05' });
    await sys!.spawn('worker');
    await sys!.spawn('worker');
    const jobs: FakeInteraction[] = [];
    for (let round = 0; round < 3; round++)
      for (let n = 0; n < 7; n++) jobs.push(await sys!.imagine({ prompt: `paid ${round}-${n}`, user: member(n) }));
    const replies = await Promise.all(jobs.map((i) => sys!.finalReply(i, 90_000)));

    const booked = await ledger(db);
    const spent = booked.reduce((s, r) => s + r.usd, 0);
    expect(spent).toBeLessThanOrEqual(0.05 + JOB_USD + 1e-9);
    // Every prediction the provider ran is booked.
    expect(booked.filter((r) => r.outcome !== 'skipped')).toHaveLength(replicate.predictions.length);
    const served = replies.filter((m) => m.attachments.some((a) => a.filename === 'image-1.png'));
    expect(served.length).toBeGreaterThanOrEqual(1);
    expect(served.length).toBe(replicate.predictions.length);
    const refused = replies.filter((m) => !m.attachments.some((a) => a.filename === 'image-1.png'));
    expect(refused.length).toBe(21 - served.length);
    for (const m of refused) {
      expect(m.content).toMatch(/monthly budget for paid providers is spent/);
      expect(m.content).toMatch(/refunded/);
      expect(m.content).not.toMatch(/down or busy/);
    }
    // Refunded: each member is charged only for images that were made.
    const usage = await db.prisma.memberUsage.findMany();
    expect(usage.reduce((s, u) => s + u.images, 0)).toBe(served.length);
    const failed = await db.prisma.job.findMany({ where: { status: 'failed' } });
    expect(failed.every((j) => j.errorCode === 'budget_spent')).toBe(true);
  }, 150_000);

  test('a paid attempt that fails is booked at what Replicate bills for it, and counts against the budget', async ({ db, redisPrefix }) => {
    const replicate = await replicateOnly({ db, redisPrefix, budget: '5', fake: { failWith: 'CUDA out of memory' } });
    await sys!.startWorker();
    const reply = await sys!.finalReply(await sys!.imagine({ prompt: 'too big for the GPU', user: member(1) }), 60_000);
    expect(reply.content).toMatch(/refunded/);
    const booked = await ledger(db);
    const failed = booked.filter((r) => r.outcome === 'failed');
    // One row per prediction that ran (BullMQ tries the job again after a failure), each at its run time's price.
    expect(replicate.predictions.length).toBeGreaterThanOrEqual(1);
    expect(failed).toHaveLength(replicate.predictions.length);
    for (const r of failed) expect(r.usd).toBeCloseTo(JOB_USD, 6);
    const job = await db.prisma.job.findFirstOrThrow();
    expect(Number(job.costUsd)).toBeCloseTo(JOB_USD * failed.length, 6);
    // The budget alert's figure and the next admission see it as spend.
    const [{ spent }] = await db.pool
      .query<{ spent: number }>(
        `SELECT COALESCE(sum(cost_usd), 0)::float8 AS spent FROM cost_ledger WHERE split_part(backend, '#', 1) IN ('replicate', 'huggingface')`,
      )
      .then((r) => r.rows as [{ spent: number }]);
    expect(spent).toBeCloseTo(JOB_USD * failed.length, 6);
  }, 90_000);

  test('our own failure after a paid success (the worker dies while screening the images) does not pay twice: the next worker resumes from the kept result, booked once', async ({
    db,
    redisPrefix,
  }) => {
    const replicate: FakeReplicate = await replicateOnly({ db, redisPrefix, budget: '5' });
    // Screening on TensorFlow's CPU backend takes seconds: the window in which this worker dies.
    const doomed = await sys!.spawn('worker', { env: { NSFW_CLASSIFIER: 'cpu' } });
    const i = await sys!.imagine({ prompt: 'paid once', user: member(2) });
    const redis = new Redis(process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379');
    closers.push(async () => void redis.disconnect());
    const jobRow = await until(async () => (await db.prisma.job.findFirst()) ?? undefined);
    await until(async () => ((await redis.exists(`${redisPrefix}:paid:${jobRow.id}`)) === 1 ? true : undefined), 30_000);
    doomed.child.kill('SIGKILL');
    expect(replicate.predictions).toHaveLength(1);
    await sys!.spawn('worker');
    const reply = await sys!.finalReply(i, 60_000);
    expect(reply.attachments.some((a) => a.filename === 'image-1.png')).toBe(true);
    expect(replicate.predictions).toHaveLength(1);
    const booked = await ledger(db);
    expect(booked).toEqual([{ outcome: 'succeeded', usd: JOB_USD }]);
    const job = await db.prisma.job.findFirstOrThrow();
    expect(Number(job.costUsd)).toBeCloseTo(JOB_USD, 6);
    // The kept result goes once the job is delivered.
    await until(async () => ((await redis.exists(`${redisPrefix}:paid:${jobRow.id}`)) === 0 ? true : undefined), 10_000);
  }, 120_000);

  test('a worker killed mid-prediction: the next try cancels the orphaned prediction, books what Replicate billed for it, and settles its reservation at that', async ({
    db,
    redisPrefix,
  }) => {
    // Predictions made now never end by themselves; predict_time is their run time up to a cancel.
    const replicate = await replicateOnly({ db, redisPrefix, budget: '5', fake: { mode: 'hang', predictTimeS: undefined } });
    const doomed = await sys!.spawn('worker');
    const i = await sys!.imagine({ prompt: 'orphaned', user: member(3) });
    // The held create answers after 5 s and the worker polls: it dies while polling, well before
    // the cap its reservation sets (about 9 s), so nobody is left to cancel the prediction.
    await until(async () => replicate.requests.some((r) => r.method === 'GET' && r.path.startsWith('/v1/predictions/')), 30_000);
    doomed.child.kill('SIGKILL');
    expect(replicate.predictions).toHaveLength(1);
    const orphan = replicate.predictions[0]!;
    // The next prediction ends normally (0.3 s billed).
    replicate.options.mode = 'ok';
    await sys!.spawn('worker');
    const reply = await sys!.finalReply(i, 60_000);
    expect(reply.attachments.some((a) => a.filename === 'image-1.png')).toBe(true);
    expect(replicate.cancels).toContain(orphan.id);
    expect(orphan.canceledAt).toBeDefined();
    // Replicate bills the orphan its run time up to the cancel, as the fake reports it.
    const orphanUsd = ((orphan.canceledAt! - (orphan.createdAt + 300 * 0.2)) / 1000) * 0.002;
    const rerunUsd = 0.3 * 0.002;
    expect(replicate.predictions).toHaveLength(2);
    const booked = await ledger(db);
    expect(booked.map((r) => r.outcome).sort()).toEqual(['cancelled', 'succeeded']);
    expect(booked.find((r) => r.outcome === 'cancelled')!.usd).toBeCloseTo(orphanUsd, 5);
    expect(booked.find((r) => r.outcome === 'succeeded')!.usd).toBeCloseTo(rerunUsd, 5);
    const job = await db.prisma.job.findFirstOrThrow();
    expect(Number(job.costUsd)).toBeCloseTo(orphanUsd + rerunUsd, 5);
    // The month's budget holds both at what they billed, nothing left reserved.
    const redis = new Redis(process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379');
    closers.push(async () => void redis.disconnect());
    const h = await redis.hgetall(`${redisPrefix}:budget:${GUILD_ID}:${budgetMonth(new Date())}`);
    expect(Number(h.settled) / 1e6).toBeCloseTo(orphanUsd + rerunUsd, 5);
    expect(Number(h.reserved)).toBe(0);
    expect(Object.keys(h).filter((k) => k.startsWith('r:'))).toEqual([]);
    expect(replicate.unhandled).toEqual([]);
  }, 120_000);

  test('a moderator lowering the budget to $0 stops jobs already queued from paying: they are told the budget is spent', async ({
    db,
    redisPrefix,
  }) => {
    const replicate = await replicateOnly({ db, redisPrefix, budget: '5' });
    // No worker yet: the jobs wait in the queue, admitted while the budget allowed paid providers.
    const jobs: FakeInteraction[] = [];
    for (let n = 0; n < 3; n++) jobs.push(await sys!.imagine({ prompt: `queued ${n}`, user: member(10 + n) }));
    await until(async () => (await db.prisma.job.count()) === 3);
    const set = await sys!.discord.slashCommand({
      name: 'admin',
      subcommand: 'budget',
      options: [{ name: 'monthly-usd', type: 10, value: 0 }],
      memberPermissions: PERMS.manager,
      user: ALICE,
      guildId: GUILD_ID,
    });
    await sys!.discord.waitFor(() => set.original()?.content.includes('$0.00'));
    await sys!.startWorker();
    const replies = await Promise.all(jobs.map((i) => sys!.finalReply(i, 60_000)));
    for (const m of replies) expect(m.content).toMatch(/monthly budget for paid providers is spent/);
    expect(replicate.predictions).toHaveLength(0);
  }, 90_000);
});
