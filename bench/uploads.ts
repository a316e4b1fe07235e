/**
 * Acknowledgement latency under a burst of large uploads: BENCH_UPLOADS (default 10) members run
 * /inpaint at once, each with a 16 MP JPEG and a full-size mask, while 5 other members run
 * /imagine 50 ms later. Prints how long each kind waited for its first answer (Discord's 3 s
 * window), and how long the uploads took to be queued. The bot runs as its own process, so the
 * fake Discord's clock is not held up by the bot's work; no worker runs (the jobs just queue).
 *
 *   npm run bench:uploads        (BENCH_UPLOADS=10)
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { Redis } from 'ioredis';
import pg from 'pg';
import sharp from 'sharp';
import { applyMigrations, ensureDatabase } from '../prisma/migrate.js';
import { startFakeDiscord } from '../tests/fakes/discord/server.js';
import type { FakeInteraction } from '../tests/fakes/discord/types.js';
import { emptyCwd, sourceEntryArgs } from '../tests/setup/processes.js';

const REDIS_URL = process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379';
const PG_ADMIN = process.env.BENCH_PG_URL ?? 'postgresql://postgres@127.0.0.1:5432/postgres';
const UPLOADS = Number(process.env.BENCH_UPLOADS ?? 10);
const SIDE = 4000;
const out = (s: string) => process.stdout.write(`${s}\n`);
const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(p * xs.length))] ?? NaN;

async function spawnBot(env: Record<string, string>): Promise<ChildProcess> {
  const child = spawn(process.execPath, sourceEntryArgs('bot/main.ts'), {
    cwd: emptyCwd(),
    env: { ...process.env, ...env, LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  await new Promise<void>((resolve, reject) => {
    let buf = '';
    child.stdout!.on('data', (c: Buffer) => {
      buf += c.toString();
      if (buf.includes('"bot ready"')) resolve();
    });
    child.once('exit', (code) => reject(new Error(`bot exited ${code}`)));
  });
  child.stdout!.resume();
  return child;
}

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
const dbName = `imagebot_bench_uploads_${stamp}`;
const dbUrl = new URL(PG_ADMIN);
dbUrl.pathname = `/${dbName}`;
await ensureDatabase(dbUrl.toString());
await applyMigrations(dbUrl.toString());
const discord = await startFakeDiscord({ heartbeatIntervalMs: 41_250 });
const prefix = `bench-uploads:${stamp}`;
const bot = await spawnBot({
  DISCORD_TOKEN: 'fake-token',
  DISCORD_APP_ID: '1111111111111111111',
  DISCORD_API_URL: discord.apiUrl,
  DATABASE_URL: dbUrl.toString(),
  REDIS_URL,
  QUEUE_PREFIX: prefix,
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
// Queued (or refused) once the upload is fetched and prepared.
await discord.waitFor(() => (up.every(({ i }) => (i.original()?.content ?? '') !== '') ? true : undefined), 120_000);
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
const r = new Redis(REDIS_URL);
let cursor = '0';
do {
  const [next, keys] = await r.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
  if (keys.length) await r.unlink(...keys);
  cursor = next;
} while (cursor !== '0');
await r.quit();
const admin = new pg.Client({ connectionString: PG_ADMIN });
await admin.connect();
await admin.query(`DROP DATABASE IF EXISTS "${dbName}" WITH (FORCE)`);
await admin.end();
process.exit(0);
