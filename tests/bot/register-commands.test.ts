import { afterEach, expect, test } from 'vitest';
import { registerCommands } from '../../bot/register-commands.js';
import { startFakeDiscord } from '../fakes/discord/server.js';

let fake: Awaited<ReturnType<typeof startFakeDiscord>> | undefined;
afterEach(async () => {
  await fake?.close();
});

// eslint-disable-next-line @typescript-eslint/no-explicit-any
const optionNames = (cmd: any): string[] => (cmd?.options ?? []).map((o: { name: string }) => o.name);

test('registration sends every command and option of the contract, guild-scoped when a dev guild is set', async () => {
  fake = await startFakeDiscord();
  await registerCommands({ token: 'fake-token', appId: '1111111111111111111', apiUrl: fake.apiUrl, guildId: '2222222222222222222' });
  const cmds = fake.registeredCommands('2222222222222222222');
  expect(fake.registeredCommands()).toEqual([]);
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  const byName: Record<string, any> = Object.fromEntries(cmds.map((c: { name: string }) => [c.name, c]));
  expect(Object.keys(byName).sort()).toEqual(['admin', 'forget', 'imagine', 'inpaint', 'quota']);
  expect(optionNames(byName.imagine)).toEqual(['prompt', 'negative', 'aspect', 'count', 'seed', 'steps', 'guidance', 'preset']);
  expect(byName.imagine.options[2].choices.map((c: { value: string }) => c.value)).toEqual([
    '1:1',
    '4:3',
    '3:4',
    '3:2',
    '2:3',
    '16:9',
    '9:16',
  ]);
  expect(byName.imagine.options[7].autocomplete).toBe(true);
  expect(optionNames(byName.inpaint)).toEqual(['image', 'prompt', 'mask', 'negative', 'strength', 'seed', 'count']);
  expect(byName.inpaint.options.find((o: { name: string }) => o.name === 'strength')).toMatchObject({ min_value: 0.05, max_value: 1 });
  expect(optionNames(byName.admin)).toEqual([
    'quota-default',
    'quota-user',
    'quota-user-clear',
    'nsfw',
    'banned-words',
    'budget',
    'gpu-price',
    'log-channel',
    'stats',
    'backends',
    'gpu',
  ]);
  expect(optionNames(byName.admin.options.find((o: { name: string }) => o.name === 'gpu'))).toEqual(['link', 'status', 'unlink', 'rotate']);
  // Manage Guild = 1 << 5
  expect(byName.admin.default_member_permissions).toBe('32');
  for (const c of cmds) expect(c.contexts).toEqual([0]);
});

test('without a dev guild the commands are registered globally', async () => {
  fake = await startFakeDiscord();
  await registerCommands({ token: 'fake-token', appId: '1111111111111111111', apiUrl: fake.apiUrl });
  expect(
    fake
      .registeredCommands()
      .map((c: { name: string }) => c.name)
      .sort(),
  ).toEqual(['admin', 'forget', 'imagine', 'inpaint', 'quota']);
});
