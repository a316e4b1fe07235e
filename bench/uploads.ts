/**
 * Acknowledgement latency under a burst of large uploads: BENCH_UPLOADS (default 10) members run
 * /inpaint at once, each with a 16 MP JPEG and a full-size mask, while 5 other members run
 * /imagine 50 ms later. Prints how long each kind waited for its first answer (Discord's 3 s
 * window), and how long the uploads took to be queued. The bot runs as its own process, so the
 * fake Discord's clock is not held up by the bot's work; no worker runs (the jobs just queue).
 *
 *   npm run bench:uploads        (BENCH_UPLOADS=10)
 */
import { once } from 'node:events';
import sharp from 'sharp';
import { startFakeDiscord } from '../tests/fakes/discord/server.js';
import type { FakeInteraction } from '../tests/fakes/discord/types.js';
import { benchDatabase, clearPrefix, pct, spawnReady, systemEnv } from './support.js';

const UPLOADS = Number(process.env.BENCH_UPLOADS ?? 10);
const SIDE = 4000;
const out = (s: string) => process.stdout.write(`${s}\n`);

/** A 16 MP photo-like JPEG (gradient and grain) and a black mask with a white square, as a member would upload. */
async function upload(): Promise<{ image: Buffer; mask: Buffer }> {
  const image = await sharp({
    create: { width: SIDE, height: SIDE, channels: 3, background: '#808080', noise: { type: 'gaussian', mean: 128, sigma: 12 } },
  })
    .jpeg({ quality: 80 })
    .toBuffer();
  const square = await sharp({ create: { width: SIDE / 4, height: SIDE / 4, channels: 3, background: '#fff' } })
    .png()
    .toBuffer();
  const mask = await sharp({ create: { width: SIDE, height: SIDE, channels: 3, background: '#000' } })
    .composite([{ input: square, left: SIDE / 2, top: SIDE / 2 }])
    .png()
    .toBuffer();
  return { image, mask };
}

const stamp = Date.now();
const db = await benchDatabase('uploads');
const discord = await startFakeDiscord({ heartbeatIntervalMs: 41_250 });
const prefix = `bench-uploads:${stamp}`;
const { child: bot } = await spawnReady('bot', {
  ...systemEnv({ discordApiUrl: discord.apiUrl, databaseUrl: db.url, prefix }),
  A1111_URL: 'http://127.0.0.1:9',
  DEFAULT_DAILY_IMAGES: '1000',
  NSFW_CLASSIFIER: 'off',
  DISCORD_ATTACHMENT_ORIGINS: discord.baseUrl,
});
const { image, mask } = await upload();
const imageUrl = discord.serveFile('bench/photo.jpg', image, 'image/jpeg');
const maskUrl = discord.serveFile('bench/mask.png', mask, 'image/png');

/** Sends an interaction and times its first answer (the acknowledgement) from the moment it left. */
async function timed(send: () => Promise<FakeInteraction>): Promise<{ i: FakeInteraction; ackMs: number }> {
  const t0 = performance.now();
  const i = await send();
  await i.waitForCallback(30_000);
  return { i, ackMs: performance.now() - t0 };
}

const user = (n: number) => ({ id: String(4200000000000000000n + BigInt(n)), username: `u${n}` });
const t0 = performance.now();
const inpaints = Array.from({ length: UPLOADS }, (_, n) =>
  timed(() =>
    discord.slashCommand({
      name: 'inpaint',
      user: user(n),
      options: [{ name: 'prompt', type: 3, value: `door ${n}` }],
      attachments: {
        image: { url: imageUrl, size: image.length, filename: 'photo.jpg', content_type: 'image/jpeg' },
        mask: { url: maskUrl, size: mask.length, filename: 'mask.png', content_type: 'image/png' },
      },
    }),
  ),
);
await new Promise((r) => setTimeout(r, 50));
const imagines = Array.from({ length: 5 }, (_, n) =>
  timed(() => discord.slashCommand({ name: 'imagine', user: user(100 + n), options: [{ name: 'prompt', type: 3, value: `fox ${n}` }] })),
);
const up = await Promise.all(inpaints);
const im = await Promise.all(imagines);
// Queued (or refused: the public deferral deleted, the member told privately) once the upload is fetched and prepared.
const settled = (i: FakeInteraction) => (i.original()?.content ?? '') !== '' || i.original()?.deleted === true;
await discord.waitFor(() => (up.every(({ i }) => settled(i)) ? true : undefined), 120_000);
const queuedMs = performance.now() - t0;
const f = (xs: number[]) => `p50 ${pct(xs, 0.5).toFixed(0)} ms, p95 ${pct(xs, 0.95).toFixed(0)} ms, max ${Math.max(...xs).toFixed(0)} ms`;
out(
  `bench/uploads: node ${process.version}; ${UPLOADS} concurrent /inpaint with a ${SIDE}×${SIDE} JPEG (${(image.length / 1024 / 1024).toFixed(1)} MB) and mask, 5 /imagine 50 ms later; bot in its own process`,
);
out(`  /inpaint acknowledged: ${f(up.map((x) => x.ackMs))}`);
out(`  /imagine acknowledged: ${f(im.map((x) => x.ackMs))}`);
out(`  all ${UPLOADS} uploads queued after ${(queuedMs / 1000).toFixed(1)} s`);

bot.kill('SIGTERM');
await once(bot, 'exit');
await discord.close();
await clearPrefix(prefix);
await db.drop();
process.exit(0);
