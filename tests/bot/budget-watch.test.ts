import { REST } from 'discord.js';
import { afterEach, expect } from 'vitest';
import { createBudgetWatch } from '../../bot/budget-watch.js';
import { Notices } from '../../bot/notices.js';
import { PgJobStore } from '../../bot/store/jobs.js';
import { SettingsStore } from '../../bot/store/settings.js';
import { StatsStore } from '../../bot/store/stats.js';
import { parseImagineOptions } from '../../core/generation.js';
import { createLogger } from '../../core/io/logger.js';
import { startFakeDiscord } from '../fakes/discord/server.js';
import { type TestDb, test } from '../setup/fixtures.js';

let fake: Awaited<ReturnType<typeof startFakeDiscord>> | undefined;
afterEach(async () => {
  await fake?.close();
});

const guildId = '2222222222222222222';
const logChannel = '5555555555555555555';
const log = createLogger({ level: 'silent' });

/** A guild with a $1 budget and a log channel, and a way to settle a paid job and run the watch on it. */
async function guildWithBudget(db: TestDb) {
  fake = await startFakeDiscord();
  // The database's clock books the ledger rows, so the watch reads the month they fall in: today's.
  const now = () => new Date();
  const settings = new SettingsStore({ pool: db.pool, prisma: async () => db.prisma }, { dailyLimit: 100, monthlyBudgetUsd: 5 }, 0);
  await settings.updateGuild(guildId, 'mod', 'budget', { monthlyBudgetUsd: 1, logChannelId: logChannel });
  const stats = new StatsStore(db.pool);
  const notices = new Notices(new REST({ api: fake.apiUrl }).setToken('fake-token'), settings, log);
  const watch = createBudgetWatch({ stats, settings, notices, now, log });
  const store = new PgJobStore(db.pool);
  async function paidJob(cost: number) {
    const r = await store.reserve({
      actor: { guildId, channelId: '4444444444444444444', userId: '3333333333333333333', channelNsfw: false },
      interaction: { applicationId: '1111111111111111111', interactionId: String(Math.random()), token: 't' },
      request: parseImagineOptions({ prompt: 'x' }),
      day: now().toISOString().slice(0, 10),
      monthStart: `${now().toISOString().slice(0, 7)}-01`,
      deploymentDailyLimit: 100,
      deploymentMonthlyBudgetUsd: 5,
      maxInFlight: 100,
    });
    if (!r.ok) throw new Error('not admitted');
    const attempts = [{ backend: 'replicate', outcome: 'succeeded' as const, seconds: 1, costUsd: cost }];
    const job = await store.settle(r.jobId, {
      status: 'succeeded',
      result: { backend: 'replicate', seed: 1, width: 1024, height: 1024, imageKeys: ['k'], runMs: 1, costUsd: cost, attempts },
    });
    await watch(job!);
  }
  const texts = () => fake!.channelMessages(logChannel).map((m) => m.content);
  return { settings, paidJob, texts };
}

test('budget notices go to the log channel once at 80 % and once at 100 % of the month, never twice', async ({ db }) => {
  const { paidJob, texts } = await guildWithBudget(db);

  await paidJob(0.5);
  expect(texts()).toEqual([]);
  await paidJob(0.35); // 85 %
  expect(texts()).toHaveLength(1);
  expect(texts()[0]).toContain('(85 %) of its $1.00 monthly budget');
  await paidJob(0.05); // 90 %: no second 80 % notice
  expect(texts()).toHaveLength(1);
  await paidJob(0.2); // 110 %
  expect(texts()).toHaveLength(2);
  expect(texts()[1]).toContain('Paid providers are now skipped');
  await paidJob(0.1);
  expect(texts()).toHaveLength(2);
  for (const m of fake!.channelMessages(logChannel)) expect(m.raw.allowed_mentions).toEqual({ parse: [] });
});

test('a moderator who raises the budget after the 100 % alert is warned again at 80 % and 100 % of the new budget', async ({ db }) => {
  const { settings, paidJob, texts } = await guildWithBudget(db);
  await paidJob(1.1); // 110 % of $1
  expect(texts()).toHaveLength(1);
  // The usual reaction to a 100 % alert; the notices sent for $1 must not stand for $10.
  await settings.updateGuild(guildId, 'mod', 'budget', { monthlyBudgetUsd: 10 });
  await paidJob(7.4); // $8.50: 85 % of $10
  expect(texts()).toHaveLength(2);
  expect(texts()[1]).toContain('(85 %) of its $10.00 monthly budget');
  await paidJob(0.1); // 86 %: still once per threshold for this budget
  expect(texts()).toHaveLength(2);
  await paidJob(2); // $10.60: 106 %, paid providers now skipped
  expect(texts()).toHaveLength(3);
  expect(texts()[2]).toContain('Paid providers are now skipped');
  await paidJob(0.1);
  expect(texts()).toHaveLength(3);
});

test('a moderator who lowers the budget below the spend gets the 100 % alert for the new budget', async ({ db }) => {
  const { settings, paidJob, texts } = await guildWithBudget(db);
  await settings.updateGuild(guildId, 'mod', 'budget', { monthlyBudgetUsd: 10 });
  await paidJob(8.5); // 85 % of $10
  expect(texts()).toHaveLength(1);
  await settings.updateGuild(guildId, 'mod', 'budget', { monthlyBudgetUsd: 5 });
  await paidJob(0.1); // $8.60: 172 % of $5, one alert (no late 80 %)
  expect(texts()).toHaveLength(2);
  expect(texts()[1]).toContain('Paid providers are now skipped');
});
