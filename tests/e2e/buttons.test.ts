import { afterEach, describe, expect } from 'vitest';
import { PERMS } from '../fakes/discord/server.js';
import type { FakeInteraction } from '../fakes/discord/types.js';
import { test } from '../setup/fixtures.js';
import { ALICE, BOB, buttonId, System } from './harness.js';

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

describe('buttons', () => {
  test('cancel while queued: removed, refunded, the message says so and the box never sees it', async ({ db, redisPrefix }) => {
    sys = await System.start({ db, redisPrefix, worker: 'none' });
    const i = await sys.imagine({ prompt: 'never mind', steps: 2 });
    const queued = await sys.discord.waitFor(() => (i.original()?.content.includes('Queued') ? i.original() : undefined));
    const press = await sys.discord.buttonPress({ customId: buttonId(queued, 'Cancel'), messageId: queued.id, user: ALICE });
    expect((await reply(sys, press)).content).toContain('Cancelled');
    await sys.discord.waitFor(() => i.original()?.content.includes('refunded'));
    expect((await db.prisma.job.findFirstOrThrow()).status).toBe('cancelled');
    expect(await db.prisma.memberUsage.findFirstOrThrow()).toMatchObject({ images: 0, inFlight: 0 });
    await sys.startWorker();
    await new Promise((r) => setTimeout(r, 500));
    expect(sys.a1111.requests.filter((r) => r.path === '/sdapi/v1/txt2img')).toHaveLength(0);
  });

  test('cancel while running: the box is interrupted and the quota refunded', async ({ db, redisPrefix }) => {
    sys = await System.start({ db, redisPrefix, a1111: { stepDelayMs: 100 } });
    const i = await sys.imagine({ prompt: 'stop this', steps: 40 });
    await sys.discord.waitFor(() => sys!.a1111.requests.some((r) => r.path === '/sdapi/v1/txt2img'));
    const msg = i.original()!;
    const press = await sys.discord.buttonPress({ customId: buttonId(msg, 'Cancel'), messageId: msg.id, user: ALICE });
    expect((await reply(sys, press)).content).toMatch(/Cancell/);
    await sys.discord.waitFor(() => i.original()?.content.includes('Cancelled'), 15_000);
    expect(sys.a1111.interrupts).toBeGreaterThanOrEqual(1);
    expect((await db.prisma.job.findFirstOrThrow()).status).toBe('cancelled');
    expect((await db.prisma.memberUsage.findFirstOrThrow()).images).toBe(0);
  });

  test('a forged or stale custom_id gets a private refusal; a non-owner cannot delete; a moderator can', async ({ db, redisPrefix }) => {
    sys = await System.start({ db, redisPrefix });
    const i = await sys.imagine({ prompt: 'mine', steps: 2 });
    const result = await sys.finalReply(i);
    for (const forged of [
      'delete:1:00000000-0000-0000-0000-000000000000',
      'upscale_job123_1',
      `delete:9:${(await db.prisma.job.findFirstOrThrow()).id}`,
    ]) {
      const p = await sys.discord.buttonPress({ customId: forged, messageId: result.id, user: ALICE });
      const r = await p.waitForCallback();
      expect(r.data?.flags & 64, forged).toBe(64);
    }
    const bob = await sys.discord.buttonPress({ customId: buttonId(result, 'Delete'), messageId: result.id, user: BOB });
    expect((await reply(sys, bob)).content).toContain('Only the member who asked');
    expect(sys.discord.messages.get(result.id)!.deleted).toBe(false);
    const mod = await sys.discord.buttonPress({
      customId: buttonId(result, 'Delete'),
      messageId: result.id,
      user: BOB,
      memberPermissions: PERMS.manager,
    });
    expect((await reply(sys, mod)).content).toBe('Deleted.');
    expect(sys.discord.messages.get(result.id)!.deleted).toBe(true);
  });

  test("a custom id that is not on the pressed message is refused: a member cannot delete someone else's result with a button of their own job", async ({
    db,
    redisPrefix,
  }) => {
    sys = await System.start({ db, redisPrefix });
    const alices = await sys.finalReply(await sys.imagine({ prompt: 'alice’s', steps: 2 }));
    const bobs = await sys.finalReply(await sys.imagine({ prompt: 'bob’s', steps: 2, user: BOB }));
    // Bob's own Delete, sent as if pressed on Alice's result (a modified client).
    const forged = await sys.discord.buttonPress({ customId: buttonId(bobs, 'Delete'), messageId: alices.id, user: BOB });
    expect((await forged.waitForCallback()).data?.flags & 64).toBe(64);
    expect((await reply(sys, forged)).content).toContain('no longer valid');
    expect(sys.discord.messages.get(alices.id)!.deleted).toBe(false);
    expect(sys.discord.messages.get(bobs.id)!.deleted).toBe(false);
  });

  test('buttons keep working after a bot restart: info answers privately, reroll makes a new image with a new seed', async ({
    db,
    redisPrefix,
  }) => {
    sys = await System.start({ db, redisPrefix });
    const result = await sys.finalReply(await sys.imagine({ prompt: 'again please', steps: 2, seed: 5 }));
    await sys.bot!.stop();
    await sys.startBot();
    const info = await sys.discord.buttonPress({ customId: buttonId(result, 'Info'), messageId: result.id, user: BOB });
    const text = (await reply(sys, info)).content;
    expect(text).toContain('again please');
    expect(text).toContain('**Seed:** 5');
    const reroll = await sys.discord.buttonPress({ customId: buttonId(result, 'Reroll'), messageId: result.id, user: ALICE });
    const again = await sys.finalReply(reroll);
    const seeds = again.embeds[0].fields.find((f: { name: string }) => f.name === 'Seed').value;
    expect(seeds).not.toBe('5');
    expect(await db.prisma.job.count()).toBe(2);
  });

  test('a job that outlives the interaction token keeps its progress with the bot token, then is posted in the channel replying to it, mentioning only the requester', async ({
    db,
    redisPrefix,
  }) => {
    sys = await System.start({
      db,
      redisPrefix,
      discord: { interactionTokenLifetimeMs: 600 },
      botOverrides: { tokenLifetimeMs: 500 },
      a1111: { stepDelayMs: 100 },
    });
    const i = await sys.imagine({ prompt: 'slow one', steps: 40 });
    const posted = await sys.discord.waitFor(
      () => sys!.discord.channelMessages('4444444444444444444').find((m) => m.attachments.some((a) => a.filename.startsWith('image-'))),
      20_000,
    );
    const reply = i.original()!;
    // Past the token's life, progress went on as edits of the reply with the bot's token.
    const botEdits = sys.discord.requests.filter(
      (r) => r.method === 'PATCH' && r.path === `/channels/4444444444444444444/messages/${reply.id}`,
    );
    expect(botEdits.some((r) => String(r.json?.content).includes('Generating'))).toBe(true);
    expect(posted.content).toContain(`<@${ALICE.id}>`);
    expect(posted.raw.allowed_mentions).toEqual({ parse: [], users: [ALICE.id] });
    expect(posted.raw.message_reference?.message_id).toBe(reply.id);
    // The old reply no longer shows stale progress or a Cancel button: it points at the result.
    await sys.discord.waitFor(() => i.original()?.content.includes(posted.id));
    expect(i.original()!.components).toEqual([]);
    expect(reply.attachments.some((a) => a.filename.startsWith('image-'))).toBe(false);
    expect((await db.prisma.job.findFirstOrThrow()).deliveredAt).not.toBeNull();
  });

  test('the progress message deleted by a user mid-job is not an error: the result is posted anew', async ({ db, redisPrefix }) => {
    sys = await System.start({ db, redisPrefix, a1111: { stepDelayMs: 100 } });
    const i = await sys.imagine({ prompt: 'delete me midway', steps: 20 });
    const queued = await sys.discord.waitFor(() => (i.original()?.content.includes('Queued') ? i.original() : undefined));
    sys.discord.deleteMessage(queued.id);
    const posted = await sys.discord.waitFor(
      () =>
        sys!.discord
          .channelMessages('4444444444444444444')
          .find((m) => !m.deleted && m.attachments.some((a) => a.filename.startsWith('image-'))),
      20_000,
    );
    expect(posted.id).not.toBe(queued.id);
  });

  test('under a fast-progressing backend, edits of one message stay within the 1.5 s coalescing window', async ({ db, redisPrefix }) => {
    // 60 steps, a progress report every 80 ms for ~5 s: far more updates than edits allowed.
    sys = await System.start({ db, redisPrefix, a1111: { stepDelayMs: 80 } });
    const i = await sys.imagine({ prompt: 'fast steps', steps: 60 });
    await sys.finalReply(i, 20_000);
    const times = sys.discord.requests
      .filter((r) => r.method === 'PATCH' && r.path.includes(`/${i.token}/messages/@original`))
      .map((r) => r.at);
    expect(times.length).toBeGreaterThanOrEqual(4);
    const progress = times.slice(1, -1); // between the queued edit and the result
    for (let k = 1; k < progress.length; k++) expect(progress[k]! - progress[k - 1]!).toBeGreaterThanOrEqual(1400);
  });
});
