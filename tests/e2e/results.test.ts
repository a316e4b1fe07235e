import sharp from 'sharp';
import { afterEach, describe, expect } from 'vitest';
import { decodeCustomId } from '../../core/custom-id.js';
import type { FakeInteraction, FakeMessage } from '../fakes/discord/types.js';
import { test } from '../setup/fixtures.js';
import { ALICE, BOB, buttonId, System } from './harness.js';

let sys: System | undefined;
afterEach(async () => {
  await sys?.stop();
  sys = undefined;
});

function labels(m: FakeMessage): string[] {
  return m.components.flatMap((row) => row.components.map((b: { label: string }) => b.label));
}

async function privateReply(s: System, i: FakeInteraction): Promise<string> {
  const m = await s.discord.waitFor(() => (i.original()?.content ? i.original() : undefined));
  return m.content;
}

type Body = Record<string, any>;
const bodiesTo = (s: System, path: string): Body[] => s.a1111.requests.filter((r) => r.path === path).map((r) => r.json as Body);

describe('results', () => {
  test('several images: a numbered grid in the embed, every full image attached, Vary and Upscale per image', async ({
    db,
    redisPrefix,
  }) => {
    sys = await System.start({ db, redisPrefix });
    const i = await sys.imagine({ prompt: 'four little boats', count: 4, steps: 2 });
    const msg = await sys.finalReply(i);
    expect(msg.attachments.map((a) => a.filename)).toEqual(['grid.webp', 'image-1.png', 'image-2.png', 'image-3.png', 'image-4.png']);
    expect(msg.embeds[0].image.url).toContain('grid.webp');
    const grid = await sharp(msg.attachments[0]!.data).metadata();
    // 2 × 2 tiles of 512 px with an 8 px gap.
    expect([grid.format, grid.width, grid.height]).toEqual(['webp', 1032, 1032]);
    for (const a of msg.attachments.slice(1)) expect((await sharp(a.data).metadata()).width).toBe(1024);
    expect(labels(msg)).toEqual(['Reroll', 'Edit', 'Info', 'Delete', 'V1', 'V2', 'V3', 'V4', 'U1', 'U2', 'U3', 'U4']);
    expect(decodeCustomId(buttonId(msg, 'U3'))).toMatchObject({ action: 'upscale', index: 2 });
  });

  test('one image: no grid, the image itself in the embed, Vary and Upscale buttons', async ({ db, redisPrefix }) => {
    sys = await System.start({ db, redisPrefix });
    const msg = await sys.finalReply(await sys.imagine({ prompt: 'a lighthouse', steps: 2 }));
    expect(msg.attachments.map((a) => a.filename)).toEqual(['image-1.png']);
    expect(msg.embeds[0].image.url).toContain('image-1.png');
    expect(labels(msg)).toEqual(['Reroll', 'Edit', 'Info', 'Delete', 'Vary', 'Upscale']);
  });

  test('Vary on image 2, after a bot restart, redraws that posted image as a new job of whoever pressed it', async ({
    db,
    redisPrefix,
  }) => {
    sys = await System.start({ db, redisPrefix });
    const result = await sys.finalReply(await sys.imagine({ prompt: 'two foxes', count: 2, steps: 2, seed: 40 }));
    // The images in Redis are gone after delivery, and a restart forgets everything in memory:
    // the button works from the message alone.
    const redis = sys.bot!.redis;
    for (let n = 0; n < 100 && (await redis.keys(`${redisPrefix}:img:*`)).length > 0; n++) await new Promise((r) => setTimeout(r, 50));
    expect(await redis.keys(`${redisPrefix}:img:*`)).toEqual([]);
    await sys.bot!.stop();
    await sys.startBot();
    const press = await sys.discord.buttonPress({ customId: buttonId(result, 'V2'), messageId: result.id, user: BOB });
    const variation = await sys.finalReply(press);
    // The box got one img2img request starting from the posted image 2, at the variation strength.
    const [body] = bodiesTo(sys, '/sdapi/v1/img2img');
    expect(body).toBeDefined();
    expect(body!.mask).toBeUndefined();
    expect(body!.denoising_strength).toBeCloseTo(0.6);
    const init = Buffer.from(String(body!.init_images[0]).replace(/^data:[^,]+,/, ''), 'base64');
    const posted = result.attachments.find((a) => a.filename === 'image-2.png')!.data;
    const [a, b] = await Promise.all([sharp(init).raw().toBuffer(), sharp(posted).raw().toBuffer()]);
    expect(a.equals(b)).toBe(true);
    expect(variation.attachments.map((x) => x.filename)).toEqual(['image-1.png']);
    expect(variation.embeds[0].description).toContain('Variation of image 2');
    const job = await db.prisma.job.findFirstOrThrow({ where: { kind: 'img2img' } });
    expect(job.userId).toBe(BOB.id);
    expect(job.imageCount).toBe(1);
    expect(job.status).toBe('succeeded');
    // Variations of variations are fine; rerolling one is not (its input is gone).
    expect(labels(variation)).toEqual(['Info', 'Delete', 'Vary', 'Upscale']);
  });

  test("Upscale uses the box's own upscaler and posts the image at twice the size", async ({ db, redisPrefix }) => {
    sys = await System.start({ db, redisPrefix });
    const result = await sys.finalReply(await sys.imagine({ prompt: 'a tiny castle', steps: 2 }));
    const press = await sys.discord.buttonPress({ customId: buttonId(result, 'Upscale'), messageId: result.id, user: ALICE });
    const up = await sys.finalReply(press, 30_000);
    const [body] = bodiesTo(sys, '/sdapi/v1/extra-single-image');
    expect(body?.upscaling_resize).toBe(2);
    const img = up.attachments.find((a) => a.filename.startsWith('image-1.'))!;
    const meta = await sharp(img.data).metadata();
    expect([meta.width, meta.height]).toEqual([2048, 2048]);
    expect(up.embeds[0].description).toContain('Upscaled from image 1');
    // At the size cap: no further upscale is offered.
    expect(labels(up)).toEqual(['Info', 'Delete']);
    expect((await db.prisma.job.findFirstOrThrow({ where: { kind: 'upscale' } })).status).toBe('succeeded');
  });

  test("Edit opens a modal with the member's own words; the edited job runs with the preset's style added again", async ({
    db,
    redisPrefix,
  }) => {
    sys = await System.start({ db, redisPrefix });
    const result = await sys.finalReply(await sys.imagine({ prompt: 'a red fox', negative: 'blurry', preset: 'photo', steps: 2 }));
    const press = await sys.discord.buttonPress({ customId: buttonId(result, 'Edit'), messageId: result.id, user: BOB });
    const cb = await press.waitForCallback();
    expect(cb.type).toBe(9);
    const inputs = cb.data.components.map((row: Body) => row.components[0]);
    expect(inputs.map((c: Body) => [c.custom_id, c.value])).toEqual([
      ['prompt', 'a red fox'],
      ['negative', 'blurry'],
    ]);
    const submit = await sys.discord.modalSubmit({
      customId: cb.data.custom_id,
      fields: { prompt: 'a blue fox', negative: '' },
      messageId: result.id,
      user: BOB,
    });
    const edited = await sys.finalReply(submit);
    expect(edited.embeds[0].description).toContain('a blue fox');
    const prompts = bodiesTo(sys, '/sdapi/v1/txt2img').map((b) => b.prompt as string);
    expect(prompts[1]).toMatch(/^a blue fox, photograph/);
    const job = await db.prisma.job.findFirstOrThrow({ where: { userId: BOB.id } });
    expect(job.status).toBe('succeeded');

    // An edited prompt over the limit is refused privately and queues nothing.
    const again = await sys.discord.modalSubmit({
      customId: cb.data.custom_id,
      fields: { prompt: 'x'.repeat(1600) },
      messageId: result.id,
      user: BOB,
    });
    expect((await again.waitForCallback()).data?.flags & 64).toBe(64);
    expect(await privateReply(sys, again)).toContain('limit is 1500');
    expect(await db.prisma.job.count()).toBe(2);
  });

  test('a 429 on the final edit delays the result but never loses it', async ({ db, redisPrefix }) => {
    sys = await System.start({ db, redisPrefix, a1111: { stepDelayMs: 80 } });
    const i = await sys.imagine({ prompt: 'rate limited', steps: 50 });
    await sys.discord.waitFor(() => i.original()?.content.includes('Generating'), 15_000);
    sys.discord.rateLimitNext({ method: 'PATCH', pathPrefix: `/webhooks/${sys.discord.appId}/${i.token}`, count: 3, retryAfterS: 0.4 });
    const msg = await sys.finalReply(i, 30_000);
    expect(msg.attachments.some((a) => a.filename === 'image-1.png')).toBe(true);
    expect(sys.discord.requests.filter((r) => r.status === 429).length).toBeGreaterThanOrEqual(1);
    expect((await db.prisma.job.findFirstOrThrow()).deliveredAt).not.toBeNull();
  });

  test('files too large for one message are split over follow-ups, each under the limit, with their own buttons', async ({
    db,
    redisPrefix,
  }) => {
    sys = await System.start({ db, redisPrefix });
    const probe = await sys.finalReply(await sys.imagine({ prompt: 'sizes', steps: 2, seed: 1 }));
    const pngSize = probe.attachments[0]!.size;
    // Each PNG fits, two do not: four images need four messages.
    const limit = Math.ceil(pngSize * 1.5);
    const i = await sys.imagine({ prompt: 'sizes', steps: 2, count: 4, seed: 1, attachmentSizeLimit: limit });
    const messages = await sys.resultMessages(i, 4);
    expect(messages.length).toBeGreaterThanOrEqual(4);
    for (const m of messages) expect(m.attachments.reduce((n, a) => n + a.size, 0)).toBeLessThanOrEqual(limit);
    expect(messages[0]!.attachments[0]!.filename).toBe('grid.webp');
    // Each image's Vary/Upscale buttons sit on the message that carries that image.
    for (const m of messages) {
      const held = m.attachments.filter((a) => a.filename.startsWith('image-')).map((a) => Number(/image-(\d)/.exec(a.filename)![1]));
      const perImage = labels(m).filter((l) => /^[VU]\d$/.test(l));
      expect(perImage.sort()).toEqual(held.flatMap((n) => [`U${n}`, `V${n}`]).sort());
      expect(labels(m)).toContain('Delete');
    }
    expect(sys.discord.requests.filter((r) => r.status === 413)).toEqual([]);
    // Delete on any part removes the whole result. The bot records the follow-ups' ids just after
    // posting the last one; a press inside those few milliseconds would only find the parts known
    // so far (a race left to the delivery code), so the press waits for the recorded delivery.
    for (let t = 0; (await db.prisma.job.findFirstOrThrow({ where: { imageCount: 4 } })).deliveredAt === null; t++) {
      if (t > 200) throw new Error('the split result was never marked delivered');
      await new Promise((r) => setTimeout(r, 10));
    }
    const last = messages[messages.length - 1]!;
    const del = await sys.discord.buttonPress({ customId: buttonId(last, 'Delete'), messageId: last.id, user: ALICE });
    expect(await privateReply(sys, del)).toBe('Deleted.');
    for (const m of messages) expect(sys.discord.messages.get(m.id)!.deleted, m.id).toBe(true);
  });
});
