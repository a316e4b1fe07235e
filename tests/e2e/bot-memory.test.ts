import { afterEach, describe, expect } from 'vitest';
import type { FakeInteraction } from '../fakes/discord/types.js';
import { test } from '../setup/fixtures.js';
import { ALICE, BOB, buttonId, GUILD_ID, System } from './harness.js';

let sys: System | undefined;
afterEach(async () => {
  await sys?.stop();
  sys = undefined;
});

async function reply(s: System, i: FakeInteraction) {
  return s.discord.waitFor(() => {
    const m = i.original();
    return m?.content ? m : undefined;
  });
}

describe("the bot's memory does not grow with its members", () => {
  test('members who run commands and press buttons leave no user, member or message behind in its caches; guilds, channels and roles stay', async ({
    db,
    redisPrefix,
  }) => {
    sys = await System.start({ db, redisPrefix });
    const result = await sys.finalReply(await sys.imagine({ prompt: 'a harbour', steps: 2, user: ALICE }));
    await sys.finalReply(await sys.imagine({ prompt: 'a pier', steps: 2, user: BOB }));
    const info = await sys.discord.buttonPress({ customId: buttonId(result, 'Info'), messageId: result.id, user: BOB });
    expect((await reply(sys, info)).content).toContain('a harbour');

    const client = sys.bot!.client;
    const self = client.user!.id;
    expect([...client.users.cache.keys()].filter((id) => id !== self)).toEqual([]);
    const guild = client.guilds.cache.get(GUILD_ID)!;
    expect([...guild.members.cache.keys()].filter((id) => id !== self)).toEqual([]);
    const cachedMessages = [...guild.channels.cache.values()].reduce((n, c) => n + ('messages' in c ? c.messages.cache.size : 0), 0);
    expect(cachedMessages).toBe(0);
    // What the bot does read: its guilds, their channels (NSFW flags) and roles (moderator roles).
    expect(guild.channels.cache.size).toBeGreaterThan(0);
    expect(guild.roles.cache.size).toBeGreaterThan(0);
  });
});
