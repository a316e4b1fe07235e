import { afterEach, expect } from 'vitest';
import type { FakeInteraction, FakeMessage } from '../fakes/discord/types.js';
import { test } from '../setup/fixtures.js';
import { ALICE, BOB, buttonId, System } from './harness.js';

let sys: System | undefined;
afterEach(async () => {
  await sys?.stop();
  sys = undefined;
});

async function answer(s: System, i: FakeInteraction): Promise<FakeMessage> {
  return s.discord.waitFor(() => {
    const m = i.original();
    return m?.content ? m : undefined;
  });
}

test('/forget, confirmed, erases the member’s prompts, parameters and result references in that guild; ledger amounts stay; Info on the result says it was forgotten', async ({
  db,
  redisPrefix,
}) => {
  sys = await System.start({ db, redisPrefix });
  const mine = await sys.finalReply(await sys.imagine({ prompt: 'my secret lighthouse', steps: 2, user: ALICE }));
  await sys.finalReply(await sys.imagine({ prompt: 'bob keeps his', steps: 2, user: BOB }));
  const aliceJob = await db.prisma.job.findFirstOrThrow({ where: { userId: ALICE.id } });

  const ask = await sys.discord.slashCommand({ name: 'forget', user: ALICE });
  const confirm = await answer(sys, ask);
  expect(confirm.flags & 64).toBe(64);
  expect(confirm.content).toContain('1 finished job');
  expect(await db.prisma.job.count({ where: { forgottenAt: { not: null } } })).toBe(0); // asking changes nothing

  const press = await sys.discord.buttonPress({
    customId: buttonId(confirm, 'Forget my data in this server'),
    messageId: confirm.id,
    user: ALICE,
  });
  expect((await answer(sys, press)).content).toContain('the prompts and settings of 1 job were erased');

  const erased = await db.prisma.job.findUniqueOrThrow({ where: { id: aliceJob.id } });
  expect(erased).toMatchObject({
    params: null,
    result: null,
    seed: null,
    interactionToken: null,
    resultMessageId: null,
    replyMessageId: null,
    forgottenReason: 'member',
    status: 'succeeded',
    imageCount: 1,
  });
  expect(JSON.stringify(await db.prisma.job.findMany({ where: { userId: ALICE.id } }))).not.toContain('lighthouse');
  expect(await db.prisma.costLedger.count({ where: { jobId: aliceJob.id } })).toBeGreaterThan(0);
  expect((await db.prisma.job.findFirstOrThrow({ where: { userId: BOB.id } })).params).toMatchObject({ prompt: 'bob keeps his' });
  const audit = await db.prisma.auditLog.findFirstOrThrow({ where: { action: 'forget' } });
  expect(audit).toMatchObject({ actorId: ALICE.id, target: ALICE.id, after: { jobs: 1 } });

  const info = await sys.discord.buttonPress({ customId: buttonId(mine, 'Info'), messageId: mine.id, user: ALICE });
  const shown = await answer(sys, info);
  expect(shown.content).toContain('forgotten at its requester');
  expect(shown.content).not.toContain('lighthouse');
  const reroll = await sys.discord.buttonPress({ customId: buttonId(mine, 'Reroll'), messageId: mine.id, user: ALICE });
  expect((await answer(sys, reroll)).content).toContain('erased');
});

test('retention: a job older than RETENTION_DAYS loses its prompt and parameters at the bot’s start, and a token past its life is erased', async ({
  db,
  redisPrefix,
}) => {
  sys = await System.start({ db, redisPrefix, env: { RETENTION_DAYS: '30' } });
  const old = await sys.finalReply(await sys.imagine({ prompt: 'an old one', steps: 2 }));
  await sys.bot!.stop();
  sys.bot = undefined;
  await db.pool.query(`UPDATE jobs SET created_at = now() - interval '31 days', interaction_token = 'still-here'`);
  await sys.startBot();
  let job = await db.prisma.job.findFirstOrThrow();
  for (let t = 0; t < 100 && !job.forgottenAt; t++) {
    await new Promise((r) => setTimeout(r, 100));
    job = await db.prisma.job.findFirstOrThrow();
  }
  expect(job).toMatchObject({ params: null, forgottenReason: 'retention', interactionToken: null });
  const info = await sys.discord.buttonPress({ customId: buttonId(old, 'Info'), messageId: old.id, user: ALICE });
  expect((await answer(sys, info)).content).toContain('keeps them for 30 days');
});
