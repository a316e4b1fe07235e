import { expect } from 'vitest';
import { SettingsStore } from '../../bot/store/settings.js';
import { test } from '../setup/fixtures.js';

const guildId = '2222222222222222222';

test('a setting read while a moderator changes it is not cached past the change: the next read sees the new value', async ({ db }) => {
  const settings = new SettingsStore({ pool: db.pool, prisma: async () => db.prisma }, { dailyLimit: 25, monthlyBudgetUsd: 5 }, 60_000);
  expect((await settings.policy(guildId)).dailyLimit).toBe(25);
  // An /imagine reads the policy while the change is being written.
  const writing = settings.updateGuild(guildId, 'mod', 'daily', { dailyLimit: 3 });
  const during = settings.policy(guildId);
  await writing;
  await during;
  expect((await settings.policy(guildId)).dailyLimit).toBe(3);

  const adding = settings.changeBannedWords(guildId, 'mod', 'add', ['forbidden']);
  const duringWords = settings.policy(guildId);
  await adding;
  await duringWords;
  expect((await settings.policy(guildId)).bannedWords).toContain('forbidden');
});
