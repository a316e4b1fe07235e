import { afterEach, expect } from 'vitest';
import { DEFAULTS } from '../fakes/discord/ids.js';
import { test } from '../setup/fixtures.js';
import { ALICE, BOB, System } from './harness.js';

/** Discord changing under the bot: it is kicked from a guild, a channel is deleted, mid-job. */

let sys: System | undefined;
afterEach(async () => {
  await sys?.stop();
  sys = undefined;
});

const GENERAL = DEFAULTS.generalChannelId;

test('the bot is removed from the server while a job runs and another waits: both are cancelled and refunded, the waiting one never runs, and each reply says so', async ({
  db,
  redisPrefix,
}) => {
  // About 6 s per job on the box: the first is running and the second waiting when the bot is kicked.
  sys = await System.start({ db, redisPrefix, a1111: { stepDelayMs: 200 } });
  const first = await sys.imagine({ prompt: 'a lighthouse at dusk', steps: 30 });
  await sys.discord.waitFor(() => sys!.a1111.jobs.some((j) => j.startedAt !== undefined), 15_000);
  const second = await sys.imagine({ prompt: 'a harbour at dawn', steps: 30 });
  await sys.discord.waitForAsync(async () => (await db.prisma.job.count()) === 2);

  await sys.discord.removeBotFromGuild(DEFAULTS.guildId);

  await sys.discord.waitForAsync(async () => {
    const jobs = await db.prisma.job.findMany();
    return jobs.every((j) => j.status === 'cancelled' && j.deliveredAt !== null);
  }, 15_000);
  // Nothing was drawn for a server that has gone: the waiting job never reached the box.
  expect(sys.a1111.jobs).toHaveLength(1);
  expect(sys.a1111.generations).toBe(0);
  const usage = await db.prisma.memberUsage.findFirstOrThrow({ where: { userId: ALICE.id } });
  expect([usage.images, usage.inFlight]).toEqual([0, 0]);
  // The replies (interaction webhooks still answer) tell the member what became of each.
  for (const i of [first, second]) expect(i.original()?.content).toContain('Cancelled');
  expect(sys.discord.requests.filter((r) => r.method === 'POST' && r.path === `/channels/${GENERAL}/messages`)).toHaveLength(0);
}, 60_000);

test('a server outage (GUILD_DELETE with unavailable) is not a removal: the job runs on and its result is posted', async ({
  db,
  redisPrefix,
}) => {
  sys = await System.start({ db, redisPrefix, a1111: { stepDelayMs: 50 } });
  const i = await sys.imagine({ prompt: 'a lighthouse at dusk', steps: 20 });
  await sys.discord.waitFor(() => sys!.a1111.jobs.some((j) => j.startedAt !== undefined), 15_000);
  await sys.discord.dispatch('GUILD_DELETE', { id: DEFAULTS.guildId, unavailable: true }, DEFAULTS.guildId);
  const msg = await sys.finalReply(i);
  expect(msg.attachments.some((a) => a.filename.startsWith('image-'))).toBe(true);
  expect((await db.prisma.job.findFirstOrThrow()).status).toBe('succeeded');
}, 60_000);

test('the channel is deleted while a job runs there: the job is stopped and refunded at once, not run to the end for a channel nobody can read', async ({
  db,
  redisPrefix,
}) => {
  sys = await System.start({ db, redisPrefix, a1111: { stepDelayMs: 200 } });
  const NSFW = DEFAULTS.nsfwChannelId;
  await sys.imagine({ prompt: 'a lighthouse at dusk', steps: 30, channelId: NSFW });
  // This channel's job is the one on the box (Bob's, queued after it, must not be the one running).
  await sys.discord.waitFor(() => sys!.a1111.jobs.some((j) => j.startedAt !== undefined && j.prompt.includes('lighthouse')), 15_000);
  const other = await sys.imagine({ prompt: 'a harbour at dawn', steps: 2, user: BOB });

  await sys.discord.deleteChannel(NSFW);

  const job = await sys.discord.waitForAsync(async () => {
    const j = await db.prisma.job.findFirst({ where: { channelId: NSFW } });
    return j && j.status !== 'queued' && j.status !== 'running' ? j : undefined;
  }, 15_000);
  expect(job.status).toBe('cancelled');
  expect(sys.a1111.interrupts).toBe(1);
  const usage = await db.prisma.memberUsage.findFirstOrThrow({ where: { userId: ALICE.id } });
  expect([usage.images, usage.inFlight]).toEqual([0, 0]);
  // The other channel's job is untouched.
  expect((await sys.finalReply(other)).attachments.some((a) => a.filename.startsWith('image-'))).toBe(true);
}, 60_000);

test('the bot is removed from a server while it is stopped: on its next start the queued job is cancelled and refunded, never run', async ({
  db,
  redisPrefix,
}) => {
  sys = await System.start({ db, redisPrefix, worker: 'none' });
  const i = await sys.imagine({ prompt: 'a lighthouse at dusk' });
  await sys.discord.waitFor(() => i.original()?.content.includes('Queued') || undefined);
  await sys.bot!.stop();
  // No gateway connection: nobody hears the GUILD_DELETE; the next READY no longer lists the guild.
  await sys.discord.removeBotFromGuild(DEFAULTS.guildId, { botOffline: true });
  await sys.startBot();
  await sys.startWorker();

  const job = await sys.discord.waitForAsync(async () => {
    const j = await db.prisma.job.findFirst();
    return j && j.status !== 'queued' && j.status !== 'running' ? j : undefined;
  }, 15_000);
  expect(job.status).toBe('cancelled');
  expect(sys.a1111.jobs).toHaveLength(0);
  const usage = await db.prisma.memberUsage.findFirstOrThrow({ where: { userId: ALICE.id } });
  expect([usage.images, usage.inFlight]).toEqual([0, 0]);
}, 60_000);
