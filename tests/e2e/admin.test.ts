import sharp from 'sharp';
import { afterEach, describe, expect } from 'vitest';
import { defaultGuilds } from '../fakes/discord/ids.js';
import { PERMS } from '../fakes/discord/server.js';
import type { APIOption, FakeInteraction } from '../fakes/discord/types.js';
import { test } from '../setup/fixtures.js';
import { ALICE, BOB, GUILD_ID, System } from './harness.js';

let sys: System | undefined;
afterEach(async () => {
  await sys?.stop();
  sys = undefined;
});

const LOG_CHANNEL = '5555555555555555555';
const userResolved = (u: { id: string; username: string }) => ({
  users: { [u.id]: { id: u.id, username: u.username, discriminator: '0', avatar: null, global_name: null } },
});

/** Every subcommand with valid options, as a moderator would send it. */
const SUBCOMMANDS: { sub: string; options: APIOption[]; resolved?: Record<string, unknown> }[] = [
  { sub: 'quota-default', options: [{ name: 'daily', type: 4, value: 10 }] },
  {
    sub: 'quota-user',
    options: [
      { name: 'user', type: 6, value: BOB.id },
      { name: 'daily', type: 4, value: 0 },
    ],
    resolved: userResolved(BOB),
  },
  { sub: 'quota-user-clear', options: [{ name: 'user', type: 6, value: BOB.id }], resolved: userResolved(BOB) },
  { sub: 'nsfw', options: [{ name: 'mode', type: 3, value: 'nsfw-channels' }] },
  {
    sub: 'banned-words',
    options: [
      { name: 'action', type: 3, value: 'add' },
      { name: 'words', type: 3, value: 'dragon, Castle' },
    ],
  },
  { sub: 'budget', options: [{ name: 'monthly-usd', type: 10, value: 12.5 }] },
  { sub: 'gpu-price', options: [{ name: 'usd-per-hour', type: 10, value: 0.5 }] },
  {
    sub: 'log-channel',
    options: [{ name: 'channel', type: 7, value: LOG_CHANNEL }],
    resolved: { channels: { [LOG_CHANNEL]: { id: LOG_CHANNEL, type: 0, name: 'nsfw-art', permissions: PERMS.member } } },
  },
  { sub: 'stats', options: [] },
  { sub: 'backends', options: [] },
];

async function admin(
  s: System,
  sub: string,
  options: APIOption[],
  perms: string,
  resolved?: Record<string, unknown>,
  user = ALICE,
): Promise<FakeInteraction> {
  return s.discord.slashCommand({ name: 'admin', subcommand: sub, options, memberPermissions: perms, user, guildId: GUILD_ID, resolved });
}

async function replyOf(s: System, i: FakeInteraction) {
  return s.discord.waitFor(() => {
    const m = i.original();
    return m && (m.content || m.embeds.length > 0) ? m : i.followUps[0];
  });
}

describe('/admin', () => {
  test('a plain member is refused on every subcommand, even when Discord let the command through, and nothing changes', async ({
    db,
    redisPrefix,
  }) => {
    sys = await System.start({ db, redisPrefix, worker: 'none' });
    for (const { sub, options, resolved } of SUBCOMMANDS) {
      const i = await admin(sys, sub, options, PERMS.member, resolved);
      const reply = await replyOf(sys, i);
      expect(reply.flags & 64, sub).toBe(64);
      expect(reply.content, sub).toContain('Only moderators');
    }
    expect(await db.prisma.guildSettings.count()).toBe(0);
    expect(await db.prisma.userQuotaOverride.count()).toBe(0);
    expect(await db.prisma.bannedWord.count()).toBe(0);
    expect(await db.prisma.auditLog.count()).toBe(0);
  });

  test('every change by a moderator writes an audit row (who, what, before, after) and a notice to the log channel', async ({
    db,
    redisPrefix,
  }) => {
    sys = await System.start({ db, redisPrefix, worker: 'none' });
    const log = SUBCOMMANDS.find((c) => c.sub === 'log-channel')!;
    await replyOf(sys, await admin(sys, log.sub, log.options, PERMS.manager, log.resolved));
    for (const { sub, options, resolved } of SUBCOMMANDS.filter((c) => c.sub !== 'log-channel')) {
      const reply = await replyOf(sys, await admin(sys, sub, options, PERMS.manager, resolved));
      expect(reply.content + JSON.stringify(reply.embeds), sub).not.toContain('Only moderators');
    }
    const audit = await db.prisma.auditLog.findMany({ orderBy: { id: 'asc' } });
    expect(audit.map((a) => a.action)).toEqual([
      'log-channel',
      'quota-default',
      'quota-user',
      'quota-user-clear',
      'nsfw',
      'banned-words add',
      'budget',
      'gpu-price',
    ]);
    for (const a of audit) expect(a.actorId).toBe(ALICE.id);
    expect(audit[1]).toMatchObject({ before: { dailyLimit: 25 }, after: { dailyLimit: 10 } });
    expect(audit[2]).toMatchObject({ target: BOB.id, before: { daily: null }, after: { daily: 0 } });
    expect(audit[6]).toMatchObject({ before: { monthlyBudgetUsd: 5 }, after: { monthlyBudgetUsd: 12.5 } });
    expect(audit[7]).toMatchObject({ before: { gpuUsdPerHour: null }, after: { gpuUsdPerHour: 0.5 } });
    expect(await db.prisma.bannedWord.findMany({ orderBy: { word: 'asc' } })).toMatchObject([{ word: 'castle' }, { word: 'dragon' }]);
    const notices = sys.discord.channelMessages(LOG_CHANNEL);
    expect(notices.length).toBe(8);
    for (const n of notices) expect(n.raw.allowed_mentions).toEqual({ parse: [] });
    expect(notices.some((n) => n.content.includes('$5.00 → **$12.50**'))).toBe(true);
  });

  test('/admin banned-words reports the words it really added or removed; when nothing changed, no notice and no audit row', async ({
    db,
    redisPrefix,
  }) => {
    sys = await System.start({ db, redisPrefix, worker: 'none' });
    const log = SUBCOMMANDS.find((c) => c.sub === 'log-channel')!;
    await replyOf(sys, await admin(sys, log.sub, log.options, PERMS.manager, log.resolved));
    const banned = async (action: string, words: string) =>
      (
        await replyOf(
          sys!,
          await admin(
            sys!,
            'banned-words',
            [
              { name: 'action', type: 3, value: action },
              { name: 'words', type: 3, value: words },
            ],
            PERMS.manager,
          ),
        )
      ).content;
    expect(await banned('add', 'dragon')).toBe('Added 1 banned word; the list now has 1.');
    expect(await banned('add', 'dragon')).toBe('Nothing changed: that word is already banned. The list has 1.');
    expect(await banned('add', 'dragon, castle')).toBe('Added 1 banned word (1 was already on the list); the list now has 2.');
    expect(await banned('remove', 'griffin')).toBe('Nothing changed: that word was not on the list. The list has 2.');
    expect(await banned('remove', 'griffin, castle, dragon')).toBe('Removed 2 banned words (1 was not on the list); the list now has 0.');
    const audit = await db.prisma.auditLog.findMany({ where: { action: { startsWith: 'banned-words' } }, orderBy: { id: 'asc' } });
    expect(audit.map((a) => [a.action, a.before, a.after])).toEqual([
      ['banned-words add', [], ['dragon']],
      ['banned-words add', ['dragon'], ['castle', 'dragon']],
      ['banned-words remove', ['castle', 'dragon'], []],
    ]);
    const notices = sys.discord.channelMessages(LOG_CHANNEL).map((n) => n.content);
    expect(notices.filter((n) => n.includes('banned word'))).toHaveLength(3);
    expect(notices.some((n) => n.includes('Nothing changed'))).toBe(false);
  });

  test('Administrator and a configured moderator role also pass the check', async ({ db, redisPrefix }) => {
    const modRole = '7777777777777777770';
    const guild = defaultGuilds()[0]!;
    guild.roles = [{ id: modRole, name: 'mods', permissions: PERMS.member }];
    sys = await System.start({ db, redisPrefix, worker: 'none', env: { MODERATOR_ROLE_IDS: modRole }, discord: { guilds: [guild] } });
    const a = await admin(sys, 'quota-default', [{ name: 'daily', type: 4, value: 7 }], PERMS.admin);
    expect((await replyOf(sys, a)).content).toContain('**7**');
    const r = await sys.discord.slashCommand({
      name: 'admin',
      subcommand: 'quota-default',
      options: [{ name: 'daily', type: 4, value: 8 }],
      memberPermissions: PERMS.member,
      roles: [modRole],
      user: BOB,
      guildId: GUILD_ID,
    });
    expect((await replyOf(sys, r)).content).toContain('**8**');
  });

  test('a per-member override beats the server default, and 0 blocks the member', async ({ db, redisPrefix }) => {
    sys = await System.start({ db, redisPrefix });
    await replyOf(sys, await admin(sys, 'quota-default', [{ name: 'daily', type: 4, value: 1 }], PERMS.manager));
    await replyOf(
      sys,
      await admin(
        sys,
        'quota-user',
        [
          { name: 'user', type: 6, value: BOB.id },
          { name: 'daily', type: 4, value: 3 },
        ],
        PERMS.manager,
        userResolved(BOB),
      ),
    );
    const bobJob = await sys.imagine({ prompt: 'bob may make three', count: 3, steps: 2, user: BOB });
    expect((await sys.finalReply(bobJob)).attachments.filter((a) => a.filename.startsWith('image-'))).toHaveLength(3);
    const alice = await sys.imagine({ prompt: 'alice only one', count: 2, steps: 2, user: ALICE });
    const told = await sys.answerOf(alice);
    expect([told.flags & 64, told.content.includes('of your 1 images')]).toEqual([64, true]);
    await replyOf(
      sys,
      await admin(
        sys,
        'quota-user',
        [
          { name: 'user', type: 6, value: BOB.id },
          { name: 'daily', type: 4, value: 0 },
        ],
        PERMS.manager,
        userResolved(BOB),
      ),
    );
    const blocked = await sys.imagine({ prompt: 'blocked', steps: 2, user: BOB });
    const off = await sys.answerOf(blocked);
    expect([off.flags & 64, off.content.includes('turned off image generation for you')]).toEqual([64, true]);
  });

  test('prompts with a banned word or, in strict mode, an NSFW term are refused privately before anything is queued', async ({
    db,
    redisPrefix,
  }) => {
    sys = await System.start({ db, redisPrefix });
    await replyOf(
      sys,
      await admin(
        sys,
        'banned-words',
        [
          { name: 'action', type: 3, value: 'add' },
          { name: 'words', type: 3, value: 'dragon' },
        ],
        PERMS.manager,
      ),
    );
    const banned = await sys.imagine({ prompt: 'a friendly DR4G0N', steps: 2 });
    // At once, or after a public deferral when a busy machine admits slowly: the member alone reads it.
    const seen1 = await sys.answerOf(banned);
    expect(seen1.flags & 64).toBe(64);
    expect(seen1.content).toContain('banned');
    const nsfw = await sys.imagine({ prompt: 'a n.u.d.e statue', steps: 2 });
    const seen2 = await sys.answerOf(nsfw);
    expect([seen2.flags & 64, seen2.content.includes('NSFW policy')]).toEqual([64, true]);
    expect(sys.publicTraces(nsfw.payload.channel_id)).toEqual([]);
    expect(await db.prisma.job.count()).toBe(0);
  });

  test('stats show jobs, images, cost by backend and top members with a chart; backends show health, circuit, latency and price', async ({
    db,
    redisPrefix,
  }) => {
    sys = await System.start({ db, redisPrefix });
    await sys.finalReply(await sys.imagine({ prompt: 'one', count: 2, steps: 2 }));
    await sys.finalReply(await sys.imagine({ prompt: 'two', steps: 2, user: BOB }));
    await sys.worker!.statusOnce();
    const st = await replyOf(sys, await admin(sys, 'stats', [{ name: 'days', type: 4, value: 7 }], PERMS.manager));
    const fields = Object.fromEntries(st.embeds[0].fields.map((f: { name: string; value: string }) => [f.name, f.value]));
    expect(fields).toMatchObject({ Jobs: '2', Images: '3', Failures: '0' });
    expect(fields['Cost by backend']).toContain('a1111');
    expect(fields['Top members']).toContain(`<@${ALICE.id}>: 2`);
    const chart = st.attachments.find((a) => a.filename === 'stats.png')!;
    expect((await sharp(chart.data).metadata()).format).toBe('png');
    const be = await replyOf(sys, await admin(sys, 'backends', [], PERMS.manager));
    const a1111 = be.embeds[0].fields.find((f: { name: string }) => f.name === 'a1111');
    expect(a1111.value).toContain('healthy');
    expect(a1111.value).toContain('circuit closed');
    expect(a1111.value).toMatch(/p50 [\d.]+ s · p95 [\d.]+ s · 100 % of 2/);
    expect(a1111.value).toContain('free (own GPU)');
  });
});
