import { afterEach, expect } from 'vitest';
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
