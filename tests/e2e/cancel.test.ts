import { Redis } from 'ioredis';
import sharp from 'sharp';
import { afterEach, expect } from 'vitest';
import { GENERATE_QUEUE } from '../../core/io/queue.js';
import { fixedClassifier, type ImageClassifier } from '../../worker/safety/classifier.js';
import type { FakeInteraction } from '../fakes/discord/types.js';
import { type FakeReplicate, startFakeReplicate } from '../fakes/replicate.js';
import { test } from '../setup/fixtures.js';
import { ALICE, buttonId, System } from './harness.js';

let sys: System | undefined;
let replicate: FakeReplicate | undefined;
afterEach(async () => {
  await sys?.stop();
  sys = undefined;
  await replicate?.close();
  replicate = undefined;
});

test('cancel after the job started on a paid provider: the member gets the images back and sees no image; the attempt is booked to the guild', async ({
  db,
  redisPrefix,
}) => {
  replicate = await startFakeReplicate({ durationMs: 8000 });
  sys = await System.start({
    db,
    redisPrefix,
    env: {
      BACKENDS: 'replicate',
      REPLICATE_API_TOKEN: 'r8_fake',
      REPLICATE_API_URL: replicate.url,
      REPLICATE_OUTPUT_ORIGINS: replicate.url,
    },
  });
  const i = await sys.imagine({ prompt: 'a slow paid one', steps: 20 });
  await sys.discord.waitFor(() => (replicate!.predictions.length > 0 ? true : undefined), 15_000);
  // Running on Replicate for a while, so the provider has run time to bill.
  await new Promise((r) => setTimeout(r, 1000));
  const msg = i.original()!;
  await sys.discord.buttonPress({ customId: buttonId(msg, 'Cancel'), messageId: msg.id, user: ALICE });
  await sys.discord.waitFor(() => i.original()?.content.includes('Cancelled'), 15_000);
  const job = await db.prisma.job.findFirstOrThrow();
  expect(job.status).toBe('cancelled');
  // The member pays nothing: the images come back to today's quota.
  const usage = await db.prisma.memberUsage.findFirstOrThrow();
  expect([usage.images, usage.inFlight]).toEqual([0, 0]);
  // The cancelled attempt is in the ledger, against the guild, at what it was booked for.
  const ledger = await db.prisma.costLedger.findMany({ where: { jobId: job.id } });
  expect(ledger.map((l) => [l.backend, l.outcome, l.guildId])).toEqual([['replicate', 'cancelled', job.guildId]]);
  expect(Number(ledger[0]!.costUsd)).toBeCloseTo(Number(job.costUsd), 6);
  // Replicate bills the run time of a cancelled prediction, the held create's included.
  expect(Number(job.costUsd)).toBeGreaterThan(0);
  expect(i.original()!.attachments.some((a) => a.filename.startsWith('image-'))).toBe(false);
}, 60_000);

/** The button's own (ephemeral) answer, once it has words. */
function answerTo(press: FakeInteraction) {
  return sys!.discord.waitFor(() => press.original()?.content || undefined);
}

test('cancel pressed while the finished image is being checked: the member is told it is cancelling, sees Cancelled and no image, and gets the images back', async ({
  db,
  redisPrefix,
}) => {
  // The classifier holds the result (not the 32 px previews) until the test lets it go.
  let checking!: () => void;
  const inCheck = new Promise<void>((r) => {
    checking = r;
  });
  let release!: () => void;
  const released = new Promise<void>((r) => {
    release = r;
  });
  const safe = fixedClassifier(0.01);
  const classifier: ImageClassifier = {
    backend: 'gate',
    async classify(png) {
      if (((await sharp(png).metadata()).width ?? 0) > 32) {
        checking();
        await released;
      }
      return safe.classify(png);
    },
  };
  sys = await System.start({ db, redisPrefix, workerOverrides: { classifier } });
  const i = await sys.imagine({ prompt: 'a statue in a park', steps: 3 });
  await inCheck;
  const msg = i.original()!;
  const press = await sys.discord.buttonPress({ customId: buttonId(msg, 'Cancel'), messageId: msg.id, user: ALICE });
  expect(await answerTo(press)).toBe('Cancelling… your quota will be refunded.');
  release();
  await sys.discord.waitFor(() => i.original()?.content.includes('Cancelled'), 15_000);
  expect((await db.prisma.job.findFirstOrThrow()).status).toBe('cancelled');
  const usage = await db.prisma.memberUsage.findFirstOrThrow();
  expect([usage.images, usage.inFlight]).toEqual([0, 0]);
  expect(i.original()!.attachments.some((a) => a.filename.startsWith('image-'))).toBe(false);
}, 60_000);

test('cancel of a retry waiting out its backoff after a billed failed run: refunded, and the billed run stays in the guild’s cost ledger', async ({
  db,
  redisPrefix,
}) => {
  // Every prediction fails after a billed run: the first try fails as a whole and BullMQ sets the retry aside.
  replicate = await startFakeReplicate({ durationMs: 200, predictTimeS: 2, failWith: 'CUDA out of memory' });
  sys = await System.start({
    db,
    redisPrefix,
    env: {
      BACKENDS: 'replicate',
      REPLICATE_API_TOKEN: 'r8_fake',
      REPLICATE_API_URL: replicate.url,
      REPLICATE_OUTPUT_ORIGINS: replicate.url,
    },
  });
  const redis = new Redis(sys.env.REDIS_URL!);
  try {
    const i = await sys.imagine({ prompt: 'an unlucky one', steps: 20 });
    const delayed = `${redisPrefix}:${GENERATE_QUEUE}:delayed`;
    await sys.discord.waitForAsync(async () => (await redis.zcard(delayed)) > 0, 20_000);
    const billedRuns = replicate.predictions.length;
    const msg = i.original()!;
    const press = await sys.discord.buttonPress({ customId: buttonId(msg, 'Cancel'), messageId: msg.id, user: ALICE });
    expect(await answerTo(press)).toBe('Cancelled. Your quota was refunded.');
    await sys.discord.waitFor(() => i.original()?.content.includes('Cancelled'), 15_000);
    const job = await db.prisma.job.findFirstOrThrow();
    expect(job.status).toBe('cancelled');
    const usage = await db.prisma.memberUsage.findFirstOrThrow();
    expect([usage.images, usage.inFlight]).toEqual([0, 0]);
    // What Replicate billed for the first try is the guild's spend, booked against it.
    const ledger = await db.prisma.costLedger.findMany({ where: { jobId: job.id } });
    expect(ledger.length).toBeGreaterThan(0);
    expect(ledger.every((l) => l.backend === 'replicate' && l.outcome === 'failed' && l.guildId === job.guildId)).toBe(true);
    expect(Number(job.costUsd)).toBeGreaterThan(0);
    expect(ledger.reduce((sum, l) => sum + Number(l.costUsd), 0)).toBeCloseTo(Number(job.costUsd), 6);
    // The retry never runs.
    await new Promise((r) => setTimeout(r, 2500));
    expect(replicate.predictions.length).toBe(billedRuns);
  } finally {
    await redis.quit();
  }
}, 60_000);
