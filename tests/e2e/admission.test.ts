import sharp from 'sharp';
import { afterEach, describe, expect } from 'vitest';
import { PERMS } from '../fakes/discord/server.js';
import type { FakeInteraction } from '../fakes/discord/types.js';
import { test } from '../setup/fixtures.js';
import { ALICE, BOB, buttonId, GUILD_ID, System } from './harness.js';

let sys: System | undefined;
afterEach(async () => {
  await sys?.stop();
  sys = undefined;
});

/** What the member reads: the first answer's text, or what replaced a deferred reply. */
async function answer(s: System, i: FakeInteraction): Promise<string> {
  return (await s.answerOf(i)).content;
}

function inpaint(s: System, user: typeof ALICE, files: Record<string, { url: string; size: number }>) {
  return s.discord.slashCommand({
    name: 'inpaint',
    user,
    options: [{ name: 'prompt', type: 3, value: 'a red door' }],
    attachments: Object.fromEntries(Object.entries(files).map(([k, v]) => [k, { ...v, filename: `${k}.png`, content_type: 'image/png' }])),
  });
}

describe('admission before any download', () => {
  test('a member blocked with daily 0: /inpaint with attachments and Vary download nothing and store nothing; the member is told', async ({
    db,
    redisPrefix,
  }) => {
    sys = await System.start({ db, redisPrefix });
    const result = await sys.finalReply(await sys.imagine({ prompt: 'a lighthouse', steps: 2 }));
    const block = await sys.discord.slashCommand({
      name: 'admin',
      subcommand: 'quota-user',
      options: [
        { name: 'user', type: 6, value: BOB.id },
        { name: 'daily', type: 4, value: 0 },
      ],
      memberPermissions: PERMS.manager,
      user: ALICE,
      guildId: GUILD_ID,
      resolved: { users: { [BOB.id]: { id: BOB.id, username: BOB.username, discriminator: '0', avatar: null, global_name: null } } },
    });
    await answer(sys, block);
    const image = await sharp({ create: { width: 64, height: 48, channels: 4, background: { r: 0, g: 0, b: 0, alpha: 0 } } })
      .png()
      .toBuffer();
    const before = sys.discord.cdnRequests.length;
    const i = await inpaint(sys, BOB, {
      image: { url: sys.discord.serveFile('bob/image.png', image, 'image/png'), size: image.length },
      mask: { url: sys.discord.serveFile('bob/mask.png', image, 'image/png'), size: image.length },
    });
    expect(await answer(sys, i)).toContain('turned off image generation for you');
    const vary = await sys.discord.buttonPress({ customId: buttonId(result, 'Vary'), messageId: result.id, user: BOB });
    expect(await answer(sys, vary)).toContain('turned off image generation for you');
    expect(sys.discord.cdnRequests.length - before).toBe(0);
    expect(await sys.bot!.redis.keys(`${redisPrefix}:input:*`)).toEqual([]);
    expect(await db.prisma.job.count({ where: { userId: BOB.id } })).toBe(0);
  });

  test('an attachment refused after admission refunds the member and leaves no input behind', async ({ db, redisPrefix }) => {
    sys = await System.start({ db, redisPrefix });
    const notImage = Buffer.from('definitely not a png');
    const i = await inpaint(sys, ALICE, {
      image: { url: sys.discord.serveFile('a/not.png', notImage, 'image/png'), size: notImage.length },
    });
    expect(await answer(sys, i)).toContain('not an image');
    const job = await db.prisma.job.findFirstOrThrow();
    expect(job).toMatchObject({ status: 'failed', errorCode: 'input_rejected' });
    expect(job.deliveredAt).not.toBeNull();
    expect((await db.prisma.memberUsage.findFirstOrThrow()).images).toBe(0);
    expect(await sys.bot!.redis.keys(`${redisPrefix}:input:*`)).toEqual([]);
    expect(sys.a1111.requests.filter((r) => r.path.includes('img2img'))).toHaveLength(0);
  });

  test('an attachment Discord declares too large, or one on a foreign origin, is refused privately before any job exists; nothing is fetched', async ({
    db,
    redisPrefix,
  }) => {
    sys = await System.start({ db, redisPrefix });
    const small = Buffer.from('tiny');
    const big = await inpaint(sys, ALICE, {
      image: { url: sys.discord.serveFile('a/big.png', small, 'image/png'), size: 30 * 1024 * 1024 },
    });
    const cb = await big.waitForCallback();
    expect(cb.data.flags & 64).toBe(64);
    expect(cb.data.content).toContain('30.0 MB');
    const foreign = await inpaint(sys, ALICE, { image: { url: 'https://evil.example/x.png', size: 100 } });
    expect((await foreign.waitForCallback()).data.flags & 64).toBe(64);
    expect(sys.discord.cdnRequests).toEqual([]);
    expect(await db.prisma.job.count()).toBe(0);
  });
});
