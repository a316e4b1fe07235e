import { createServer } from 'node:http';
import { Redis } from 'ioredis';
import sharp from 'sharp';
import { afterEach, describe, expect } from 'vitest';
import { bombPng } from '../fixtures/png.js';
import { test } from '../setup/fixtures.js';
import { System } from './harness.js';

let sys: System | undefined;
let foreign: ReturnType<typeof createServer> | undefined;
afterEach(async () => {
  await sys?.stop();
  sys = undefined;
  foreign?.close();
  foreign = undefined;
});

/** A 96×64 photo-like image: a gradient, so "unchanged" pixels are checked for real. */
async function photo(): Promise<Buffer> {
  const w = 96;
  const h = 64;
  const raw = Buffer.alloc(w * h * 3);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) raw.set([x * 2, y * 3, (x + y) % 256], (y * w + x) * 3);
  return sharp(raw, { raw: { width: w, height: h, channels: 3 } })
    .png()
    .toBuffer();
}

/** White square (repaint) in the middle of a black mask of another size than the image. */
async function mask(): Promise<Buffer> {
  const bg = sharp({ create: { width: 192, height: 128, channels: 3, background: '#000' } });
  const square = await sharp({ create: { width: 64, height: 48, channels: 3, background: '#fff' } })
    .png()
    .toBuffer();
  return bg
    .composite([{ input: square, left: 64, top: 40 }])
    .png()
    .toBuffer();
}

async function start(db: { url: string }, redisPrefix: string) {
  sys = await System.start({ db, redisPrefix });
  return sys;
}

function inpaint(s: System, files: Record<string, { url: string; size: number; filename: string }>, prompt = 'a red door') {
  return s.discord.slashCommand({
    name: 'inpaint',
    options: [{ name: 'prompt', type: 3, value: prompt }],
    attachments: Object.fromEntries(Object.entries(files).map(([k, v]) => [k, { ...v, content_type: 'image/png' }])),
  });
}

describe('/inpaint end to end', () => {
  test('an explicit mask of another size: the box gets image and mask, unmasked pixels come back identical', async ({
    db,
    redisPrefix,
  }) => {
    const s = await start(db, redisPrefix);
    s.env.DISCORD_ATTACHMENT_ORIGINS = s.discord.baseUrl;
    await s.bot!.stop();
    await s.startBot();
    const original = await photo();
    const m = await mask();
    const i = await inpaint(s, {
      image: { url: s.discord.serveFile('img/photo.png', original, 'image/png'), size: original.length, filename: 'photo.png' },
      mask: { url: s.discord.serveFile('img/mask.png', m, 'image/png'), size: m.length, filename: 'mask.png' },
    });
    const msg = await s.finalReply(i);
    const req = s.a1111.requests.find((r) => r.path === '/sdapi/v1/img2img')!.json as Record<string, unknown>;
    expect(Array.isArray(req.init_images) && req.init_images.length).toBe(1);
    expect(typeof req.mask).toBe('string');
    expect(req.denoising_strength).toBe(0.75);
    expect((req.width as number) % 64).toBe(0);
    // Admitted before its image was read, the job's stored request has the size it ran at (a requeue would use it).
    const stored = (await db.prisma.job.findFirstOrThrow()).params as { width: number; height: number };
    expect([stored.width, stored.height]).toEqual([req.width, req.height]);
    expect(req.width).not.toBe(req.height);
    const out = msg.attachments.find((a) => a.filename === 'image-1.png')!.data;
    const a = await sharp(original).removeAlpha().raw().toBuffer({ resolveWithObject: true });
    const b = await sharp(out).removeAlpha().raw().toBuffer({ resolveWithObject: true });
    expect([b.info.width, b.info.height]).toEqual([96, 64]);
    // Corner far outside the mask: byte-identical to the original.
    for (const [x, y] of [
      [0, 0],
      [95, 0],
      [0, 63],
      [95, 63],
      [10, 10],
    ] as const) {
      const o = (y * 96 + x) * 3;
      expect([...b.data.subarray(o, o + 3)]).toEqual([...a.data.subarray(o, o + 3)]);
    }
    // Centre of the mask: repainted.
    const c = (32 * 96 + 48) * 3;
    expect([...b.data.subarray(c, c + 3)]).not.toEqual([...a.data.subarray(c, c + 3)]);
  });

  test('an opaque image without a mask, or a file that is not an image, is refused privately and reaches no backend', async ({
    db,
    redisPrefix,
  }) => {
    const s = await start(db, redisPrefix);
    s.env.DISCORD_ATTACHMENT_ORIGINS = s.discord.baseUrl;
    await s.bot!.stop();
    await s.startBot();
    const original = await photo();
    const noMask = await inpaint(s, {
      image: { url: s.discord.serveFile('a.png', original, 'image/png'), size: original.length, filename: 'a.png' },
    });
    // Refused at once or after a public deferral (a busy machine reads the file past the acknowledgement
    // budget): either way the member alone reads why, and the channel keeps nothing of it.
    const seen1 = await s.answerOf(noMask);
    expect(seen1.flags & 64).toBe(64);
    expect(seen1.content).toContain('mask');
    const text = Buffer.from('definitely not a png');
    const notImage = await inpaint(s, {
      image: { url: s.discord.serveFile('b.png', text, 'image/png'), size: text.length, filename: 'b.png' },
    });
    const seen2 = await s.answerOf(notImage);
    expect(seen2.flags & 64).toBe(64);
    expect(seen2.content).toContain('not an image');
    expect(s.publicTraces(noMask.payload.channel_id)).toEqual([]);
    expect(s.a1111.requests.filter((r) => r.path.includes('img2img'))).toHaveLength(0);
    // Each was admitted before its attachment was read, then refunded: nothing charged, nothing ran.
    const jobs = await db.prisma.job.findMany();
    expect(jobs.map((j) => [j.status, j.errorCode])).toEqual(jobs.map(() => ['failed', 'input_rejected']));
    expect((await db.prisma.memberUsage.findFirstOrThrow()).images).toBe(0);
  });

  test('a refusal known only after the reply was deferred publicly (a slow download) still reaches the member alone; the channel keeps nothing of it', async ({
    db,
    redisPrefix,
  }) => {
    const s = await start(db, redisPrefix);
    const original = await photo();
    const url = s.discord.serveFile('slow.png', original, 'image/png');
    // The download outlasts the acknowledgement budget, so the bot says "thinking…" in public first.
    s.discord.slowNext({ pathPrefix: new URL(url).pathname, count: 1, ms: 2500 });
    const i = await inpaint(s, { image: { url, size: original.length, filename: 'slow.png' } });
    const cb = await i.waitForCallback();
    expect([cb.type, cb.data.flags & 64]).toEqual([5, 0]);
    const seen = await s.answerOf(i);
    expect(seen.flags & 64).toBe(64);
    expect(seen.content).toContain('mask');
    expect(s.publicTraces(i.payload.channel_id)).toEqual([]);
    const [job] = await db.prisma.job.findMany();
    expect([job?.status, job?.errorCode]).toEqual(['failed', 'input_rejected']);
    expect((await db.prisma.memberUsage.findFirstOrThrow()).images).toBe(0);
  });

  test('a mask of other proportions than the image is refused privately from the sizes Discord declares, naming both, before any job exists or any file is fetched; a client that lies about the sizes is still refused and refunded', async ({
    db,
    redisPrefix,
  }) => {
    const s = await start(db, redisPrefix);
    s.env.DISCORD_ATTACHMENT_ORIGINS = s.discord.baseUrl;
    await s.bot!.stop();
    await s.startBot();
    const original = await photo(); // 96×64
    const square = await sharp({ create: { width: 64, height: 64, channels: 3, background: '#fff' } })
      .png()
      .toBuffer();
    const imageUrl = s.discord.serveFile('odd/photo.png', original, 'image/png');
    const maskUrl = s.discord.serveFile('odd/mask.png', square, 'image/png');
    const files = {
      image: { url: imageUrl, size: original.length, filename: 'photo.png' },
      mask: { url: maskUrl, size: square.length, filename: 'mask.png' },
    };
    // The fake declares each upload's width and height, as Discord does.
    const i = await inpaint(s, files);
    const seen = await s.answerOf(i);
    expect(seen.flags & 64).toBe(64);
    expect(seen.content).toContain('The mask is 64×64 but the image is 96×64');
    expect(s.publicTraces(i.payload.channel_id)).toEqual([]);
    expect(s.discord.cdnRequests).toEqual([]);
    expect(await db.prisma.job.count()).toBe(0);
    expect((await db.prisma.memberUsage.findFirst())?.images ?? 0).toBe(0);

    // Declared sizes that agree but files that do not: the check on the decoded files still refuses, and refunds.
    const lying = await s.discord.slashCommand({
      name: 'inpaint',
      options: [{ name: 'prompt', type: 3, value: 'a red door' }],
      attachments: {
        image: { ...files.image, content_type: 'image/png', width: 96, height: 64 },
        mask: { ...files.mask, content_type: 'image/png', width: 96, height: 64 },
      },
    });
    const told = await s.answerOf(lying);
    expect(told.flags & 64).toBe(64);
    expect(told.content).toContain('The mask is 64×64 but the image is 96×64');
    const jobs = await db.prisma.job.findMany();
    expect(jobs.map((j) => [j.status, j.errorCode])).toEqual([['failed', 'input_rejected']]);
    expect((await db.prisma.memberUsage.findFirstOrThrow()).images).toBe(0);
    expect(s.a1111.requests.filter((r) => r.path.includes('img2img'))).toHaveLength(0);
  });

  test('an attachment on a foreign origin is refused before any request reaches that origin', async ({ db, redisPrefix }) => {
    const s = await start(db, redisPrefix);
    const hits: string[] = [];
    foreign = createServer((req, res) => {
      hits.push(req.url ?? '');
      res.end('x');
    });
    await new Promise<void>((r) => foreign!.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(foreign.address() as { port: number }).port}/evil.png`;
    const i = await inpaint(s, { image: { url, size: 100, filename: 'evil.png' } });
    const cb = await i.waitForCallback();
    expect(cb.data.flags & 64).toBe(64);
    expect(hits).toEqual([]);
  });

  test('30 MB, a 20000×20000 header and a redirect to a foreign origin are each refused privately; nothing runs', async ({
    db,
    redisPrefix,
  }) => {
    const s = await start(db, redisPrefix);
    s.env.DISCORD_ATTACHMENT_ORIGINS = s.discord.baseUrl;
    await s.bot!.stop();
    await s.startBot();
    const hits: string[] = [];
    foreign = createServer((req, res) => {
      hits.push(req.url ?? '');
      res.end('x');
    });
    await new Promise<void>((r) => foreign!.listen(0, '127.0.0.1', r));
    const big = Buffer.concat([await photo(), Buffer.alloc(30 * 1024 * 1024)]);
    const cases: [string, string, number][] = [
      [s.discord.serveFile('big.png', big, 'image/png'), '30.0 MB', big.length],
      [s.discord.serveFile('bomb.png', bombPng(), 'image/png'), 'megapixels', 100],
      [s.discord.serveRedirect('moved.png', `http://127.0.0.1:${(foreign.address() as { port: number }).port}/x.png`), '', 100],
    ];
    for (const [url, words, size] of cases) {
      const i = await inpaint(s, { image: { url, size, filename: 'x.png' } });
      const seen = await s.answerOf(i);
      expect(seen.flags & 64, url).toBe(64);
      if (words) expect(seen.content).toContain(words);
      expect(s.publicTraces(i.payload.channel_id), url).toEqual([]);
    }
    expect(hits).toEqual([]);
    expect(s.a1111.requests.filter((r) => r.path.includes('img2img'))).toHaveLength(0);
    // Each was admitted before its attachment was read, then refunded: nothing charged, nothing ran.
    const jobs = await db.prisma.job.findMany();
    expect(jobs.map((j) => [j.status, j.errorCode])).toEqual(jobs.map(() => ['failed', 'input_rejected']));
    expect((await db.prisma.memberUsage.findFirstOrThrow()).images).toBe(0);
  });

  test('without a mask, the transparent pixels of the image are the area to repaint', async ({ db, redisPrefix }) => {
    const s = await start(db, redisPrefix);
    s.env.DISCORD_ATTACHMENT_ORIGINS = s.discord.baseUrl;
    await s.bot!.stop();
    await s.startBot();
    // The photo with a fully transparent 32×32 square at (32, 16).
    const { data, info } = await sharp(await photo())
      .ensureAlpha()
      .raw()
      .toBuffer({ resolveWithObject: true });
    for (let y = 16; y < 48; y++) for (let x = 32; x < 64; x++) data[(y * info.width + x) * 4 + 3] = 0;
    const withHole = await sharp(data, { raw: { width: info.width, height: info.height, channels: 4 } })
      .png()
      .toBuffer();
    const i = await inpaint(s, {
      image: { url: s.discord.serveFile('hole.png', withHole, 'image/png'), size: withHole.length, filename: 'hole.png' },
    });
    const msg = await s.finalReply(i);
    expect(msg.attachments.some((a) => a.filename === 'image-1.png')).toBe(true);
    const req = s.a1111.requests.find((r) => r.path === '/sdapi/v1/img2img')!.json as Record<string, unknown>;
    const m = await sharp(Buffer.from(String(req.mask), 'base64'))
      .greyscale()
      .raw()
      .toBuffer({ resolveWithObject: true });
    const at = (x: number, y: number) => m.data[Math.floor((y / 64) * m.info.height) * m.info.width + Math.floor((x / 96) * m.info.width)]!;
    expect(at(48, 32)).toBeGreaterThan(200); // inside the hole: repaint
    expect(at(5, 5)).toBeLessThan(50); // opaque corner: keep
  });

  test('a job the box refuses: once its failure is posted, none of its input images is left in Redis', async ({ db, redisPrefix }) => {
    sys = await System.start({ db, redisPrefix, a1111: { mode: 'reject-401' } });
    sys.env.DISCORD_ATTACHMENT_ORIGINS = sys.discord.baseUrl;
    await sys.bot!.stop();
    await sys.startBot();
    const original = await photo();
    const m = await mask();
    const i = await inpaint(sys, {
      image: { url: sys.discord.serveFile('img/photo.png', original, 'image/png'), size: original.length, filename: 'photo.png' },
      mask: { url: sys.discord.serveFile('img/mask.png', m, 'image/png'), size: m.length, filename: 'mask.png' },
    });
    expect((await sys.finalReply(i)).content).toMatch(/could not be made/);
    expect((await db.prisma.job.findFirstOrThrow()).deliveredAt).not.toBeNull();
    const redis = new Redis(sys.env.REDIS_URL!);
    try {
      // The member's upload, its mask and the prepared copies: none outlives the posted failure.
      await expect.poll(() => redis.keys(`${redisPrefix}:*input:*`), { timeout: 5000 }).toEqual([]);
    } finally {
      redis.disconnect();
    }
  });
});
