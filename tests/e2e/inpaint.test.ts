import { createServer } from 'node:http';
import sharp from 'sharp';
import { afterEach, describe, expect } from 'vitest';
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
  return sharp(raw, { raw: { width: w, height: h, channels: 3 } }).png().toBuffer();
}

/** White square (repaint) in the middle of a black mask of another size than the image. */
async function mask(): Promise<Buffer> {
  const bg = sharp({ create: { width: 192, height: 128, channels: 3, background: '#000' } });
  const square = await sharp({ create: { width: 64, height: 48, channels: 3, background: '#fff' } }).png().toBuffer();
  return bg.composite([{ input: square, left: 64, top: 40 }]).png().toBuffer();
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
  test('an explicit mask of another size: the box gets image and mask, unmasked pixels come back identical', async ({ db, redisPrefix }) => {
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
    const out = msg.attachments.find((a) => a.filename === 'image-1.png')!.data;
    const a = await sharp(original).removeAlpha().raw().toBuffer({ resolveWithObject: true });
    const b = await sharp(out).removeAlpha().raw().toBuffer({ resolveWithObject: true });
    expect([b.info.width, b.info.height]).toEqual([96, 64]);
    // Corner far outside the mask: byte-identical to the original.
    for (const [x, y] of [[0, 0], [95, 0], [0, 63], [95, 63], [10, 10]] as const) {
      const o = (y * 96 + x) * 3;
      expect([...b.data.subarray(o, o + 3)]).toEqual([...a.data.subarray(o, o + 3)]);
    }
    // Centre of the mask: repainted.
    const c = (32 * 96 + 48) * 3;
    expect([...b.data.subarray(c, c + 3)]).not.toEqual([...a.data.subarray(c, c + 3)]);
  });

  test('an opaque image without a mask, or a file that is not an image, is refused privately and reaches no backend', async ({ db, redisPrefix }) => {
    const s = await start(db, redisPrefix);
    s.env.DISCORD_ATTACHMENT_ORIGINS = s.discord.baseUrl;
    await s.bot!.stop();
    await s.startBot();
    const original = await photo();
    const noMask = await inpaint(s, { image: { url: s.discord.serveFile('a.png', original, 'image/png'), size: original.length, filename: 'a.png' } });
    const cb1 = await noMask.waitForCallback();
    expect(cb1.data.flags & 64).toBe(64);
    expect(cb1.data.content).toContain('mask');
    const text = Buffer.from('definitely not a png');
    const notImage = await inpaint(s, { image: { url: s.discord.serveFile('b.png', text, 'image/png'), size: text.length, filename: 'b.png' } });
    const cb2 = await notImage.waitForCallback();
    expect(cb2.data.content).toContain('not an image');
    expect(s.a1111.requests.filter((r) => r.path.includes('img2img'))).toHaveLength(0);
    expect(await db.prisma.job.count()).toBe(0);
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
});
