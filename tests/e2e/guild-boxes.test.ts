import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import sharp from 'sharp';
import { afterEach, expect } from 'vitest';
import { readBackendStatus } from '../../core/io/backend-status.js';
import { type FakeA1111, startFakeA1111 } from '../fakes/a1111.js';
import { defaultGuilds } from '../fakes/discord/ids.js';
import type { FakeUser } from '../fakes/discord/types.js';
import { startFakeReplicate } from '../fakes/replicate.js';
import { test } from '../setup/fixtures.js';
import { listenablePort } from '../setup/ports.js';
import { emptyCwd, sourceEntryArgs } from '../setup/processes.js';
import { ALICE, BOB, GUILD_ID, type Proc, System } from './harness.js';

/** Guild A has linked its own GPU box; guild B has none. */
const GUILD_A = GUILD_ID;
const GUILD_B = '2222222222222222299';
const B_CHANNEL = '4444444444444444499';
const guilds = () => [...defaultGuilds(), { id: GUILD_B, name: 'Guild B', channels: [{ id: B_CHANNEL, name: 'general', nsfw: false }] }];
const member = (n: number): FakeUser => ({ id: `33333333333333330${n}0`, username: `member${n}` });

let sys: System | undefined;
let own: FakeA1111 | undefined;
afterEach(async () => {
  await sys?.stop();
  await own?.close();
  sys = undefined;
  own = undefined;
});

const prompts = (box: FakeA1111) =>
  box.requests.filter((r) => r.path === '/sdapi/v1/txt2img').map((r) => (r.json as { prompt: string }).prompt);

/** Runs guild A's own worker as a real process on its own box, and waits until the bot can see it report in. */
async function startGuildWorker(s: System, box: FakeA1111, prefix: string, env: Record<string, string> = {}): Promise<Proc> {
  const proc = await s.spawn('worker', { env: { WORKER_GUILD_ID: GUILD_A, A1111_URL: box.url, ...env } });
  await until(async () =>
    (await readBackendStatus(s.bot!.redis, `${prefix}:g:${GUILD_A}`)).some((r) => r.healthy && Date.now() - r.at < 5000),
  );
  return proc;
}

/** Polls an async condition (the fake's waitFor takes a pending promise for a truthy answer at once). */
async function until(fn: () => Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await fn())) {
    if (Date.now() > deadline) throw new Error(`not true within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

test("each guild's jobs land where they should: guild A's on its own box, booked at its own price and not in its budget; guild B's on the shared box", async ({
  db,
  redisPrefix,
}) => {
  own = await startFakeA1111();
  sys = await System.start({ db, redisPrefix, discord: { guilds: guilds() } });
  // The guild's owner sets a price on their own worker: the operator must not pay it, nor the budget count it.
  await startGuildWorker(sys, own, redisPrefix, { A1111_USD_PER_GPU_HOUR: '100' });
  await db.prisma.guildSettings.create({ data: { guildId: GUILD_A, gpuUsdPerHour: 36 } });

  const a = await sys.imagine({ prompt: 'guild a cat', steps: 20, user: ALICE });
  const b = await sys.discord.slashCommand({
    name: 'imagine',
    options: [
      { name: 'prompt', type: 3, value: 'guild b dog' },
      { name: 'steps', type: 4, value: 20 },
    ],
    user: BOB,
    guildId: GUILD_B,
    channelId: B_CHANNEL,
  });
  await Promise.all([sys.finalReply(a), sys.finalReply(b)]);
  expect(a.original()!.attachments.some((f) => f.filename.startsWith('image-'))).toBe(true);
  expect(b.original()!.attachments.some((f) => f.filename.startsWith('image-'))).toBe(true);

  expect(prompts(own)).toEqual([expect.stringContaining('guild a cat')]);
  expect(prompts(sys.a1111)).toEqual([expect.stringContaining('guild b dog')]);

  const ledger = await db.prisma.costLedger.findMany({ where: { guildId: GUILD_A } });
  expect(ledger).toHaveLength(1);
  expect(Number(ledger[0]!.costUsd)).toBe(0);
  // 36 $/h is 0.01 $ per second of the box's time.
  expect(Number(ledger[0]!.ownUsd)).toBeCloseTo(Number(ledger[0]!.seconds) * 0.01, 4);
  expect(Number(ledger[0]!.ownUsd)).toBeGreaterThan(0);
  const jobA = await db.prisma.job.findFirstOrThrow({ where: { guildId: GUILD_A } });
  expect(Number(jobA.costUsd)).toBe(0);
});

// SIGKILL: the running job comes back once its lock lapses; SIGTERM: the worker hands it back (a
// delayed retry in the guild's queue, which no worker there will ever take).
test.for(['SIGKILL', 'SIGTERM'] as const)(
  "guild A's worker and box go away mid-queue (%s): its running and waiting jobs are handed to the shared box, each delivered once, nothing refunded",
  async (signal, { db, redisPrefix }) => {
    own = await startFakeA1111({ stepDelayMs: 100 });
    sys = await System.start({ db, redisPrefix, discord: { guilds: guilds() }, env: { MAX_QUEUED_PER_USER: '10' } });
    const worker = await startGuildWorker(sys, own, redisPrefix);
    const jobs = [];
    for (let n = 1; n <= 3; n++) {
      const i = await sys.imagine({ prompt: `own ${n}`, steps: 30, user: ALICE });
      await i.waitForCallback();
      jobs.push(i);
    }
    // The first is running on the own box (3 s of steps), the others wait in the guild's queue.
    await sys.discord.waitFor(() => own!.requests.some((r) => r.path === '/sdapi/v1/txt2img') || undefined, 10_000);
    worker.child.kill(signal);
    await worker.exited;
    await own.close();
    own = undefined;

    const finals = await Promise.all(jobs.map((i) => sys!.finalReply(i, 40_000)));
    for (const m of finals) expect(m.attachments.filter((f) => f.filename.startsWith('image-'))).toHaveLength(1);
    expect([...prompts(sys.a1111)].sort()).toEqual(['own 1', 'own 2', 'own 3'].map((p) => expect.stringContaining(p)));
    expect(prompts(sys.a1111)).toHaveLength(3);
    const rows = await db.prisma.job.findMany();
    expect(rows.map((r) => r.status)).toEqual(['succeeded', 'succeeded', 'succeeded']);
    // Charged once each: three images counted today, none given back.
    const usage = await db.prisma.memberUsage.findFirstOrThrow({ where: { guildId: GUILD_A, userId: ALICE.id } });
    expect(usage.images).toBe(3);
  },
);

test('a guild worker whose box fails gives the job back, and it runs on the shared box instead of failing', async ({ db, redisPrefix }) => {
  own = await startFakeA1111({ mode: 'error500' });
  sys = await System.start({ db, redisPrefix, discord: { guilds: guilds() } });
  // A box answering 500 to every job still answers its health check: it reports in.
  await startGuildWorker(sys, own, redisPrefix);
  const i = await sys.imagine({ prompt: 'given back', steps: 4 });
  const final = await sys.finalReply(i, 30_000);
  expect(final.attachments.some((f) => f.filename.startsWith('image-'))).toBe(true);
  expect(prompts(own).length).toBeGreaterThan(0);
  expect(prompts(sys.a1111)).toEqual([expect.stringContaining('given back')]);
  expect((await db.prisma.job.findFirstOrThrow()).status).toBe('succeeded');
});

test("fairness between guilds on one shared box: guild A's flood does not push guild B's job to the back", async ({ db, redisPrefix }) => {
  sys = await System.start({ db, redisPrefix, worker: 'none', discord: { guilds: guilds() } });
  const flood = [];
  // Four different members of guild A, none with any usage: member fairness alone would run them all first.
  // One after another, each in the queue before the next is asked (the turn counts jobs already
  // waiting; two admitted at the same instant may share one).
  const waiting = () => sys!.bot!.redis.zcard(`${redisPrefix}:generate:prioritized`);
  for (let n = 1; n <= 4; n++) {
    const i = await sys.imagine({ prompt: `a ${n}`, steps: 2, user: member(n) });
    await until(async () => (await waiting()) === n);
    flood.push(i);
  }
  const b = await sys.discord.slashCommand({
    name: 'imagine',
    options: [
      { name: 'prompt', type: 3, value: 'b 1' },
      { name: 'steps', type: 4, value: 2 },
    ],
    user: BOB,
    guildId: GUILD_B,
    channelId: B_CHANNEL,
  });
  await b.waitForCallback();
  await until(async () => (await db.prisma.job.count()) === 5);
  await sys.startWorker();
  await Promise.all([...flood, b].map((i) => sys!.finalReply(i)));
  expect(prompts(sys.a1111).map((p) => p.split(',')[0])).toEqual(['a 1', 'b 1', 'a 2', 'a 3', 'a 4']);
});

test("the operator's boxes serve only the guilds SHARED_BOX_GUILDS lists: another guild's job runs in the cloud, within its budget", async ({
  db,
  redisPrefix,
}) => {
  const replicate = await startFakeReplicate({ durationMs: 50 });
  try {
    sys = await System.start({
      db,
      redisPrefix,
      discord: { guilds: guilds() },
      env: {
        SHARED_BOX_GUILDS: GUILD_A,
        BACKENDS: 'a1111,replicate',
        REPLICATE_API_TOKEN: 'r8_fake',
        REPLICATE_API_URL: replicate.url,
        REPLICATE_OUTPUT_ORIGINS: replicate.url,
      },
    });
    const a = await sys.imagine({ prompt: 'allowed', steps: 4 });
    const b = await sys.discord.slashCommand({
      name: 'imagine',
      options: [
        { name: 'prompt', type: 3, value: 'not allowed' },
        { name: 'steps', type: 4, value: 4 },
      ],
      user: BOB,
      guildId: GUILD_B,
      channelId: B_CHANNEL,
    });
    await Promise.all([sys.finalReply(a), sys.finalReply(b)]);
    expect(prompts(sys.a1111)).toEqual([expect.stringContaining('allowed')]);
    expect(replicate.predictions).toHaveLength(1);
    expect((await db.prisma.job.findFirstOrThrow({ where: { guildId: GUILD_B } })).backend).toBe('replicate');
  } finally {
    await replicate.close();
  }
});

test("/metrics and npm run status show each guild's own queue and boxes, and where its jobs went", async ({ db, redisPrefix }) => {
  own = await startFakeA1111();
  const port = await listenablePort();
  sys = await System.start({ db, redisPrefix, worker: 'none', discord: { guilds: guilds() }, env: { HTTP_PORT: String(port) } });
  await startGuildWorker(sys, own, redisPrefix, { HTTP_PORT: '0' });
  await sys.finalReply(await sys.imagine({ prompt: 'on my box', steps: 2 }));

  const body = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  expect(body).toMatch(new RegExp(`imagebot_guild_boxes_online\\{[^}]*guild="${GUILD_A}"[^}]*\\} 1`));
  expect(body).toMatch(new RegExp(`imagebot_jobs_queued_total\\{[^}]*guild="${GUILD_A}"[^}]*to="own"[^}]*\\} 1`));
  expect(body).toMatch(new RegExp(`imagebot_queue_jobs\\{[^}]*state="active"[^}]*space="${GUILD_A}"`));

  const { stdout } = await promisify(execFile)(process.execPath, sourceEntryArgs('scripts/status.ts'), {
    cwd: emptyCwd(),
    env: { ...process.env, DATABASE_URL: db.url, REDIS_URL: sys.env.REDIS_URL, QUEUE_PREFIX: redisPrefix },
  });
  expect(stdout).toContain("Guilds' own boxes");
  expect(stdout).toMatch(new RegExp(`${GUILD_A}\\s+0\\s+0\\s+a1111\\s+\\S+\\s+\\S+\\s+up`));
  expect(stdout).toMatch(new RegExp(`${GUILD_A}\\s+1\\s+0\\.0000\\s+0\\.0000`));
});

test("an /inpaint job for guild A runs on its own box, its inputs parked in the guild's key space: its worker, held to that key space by a Redis ACL, reads them", async ({
  db,
  redisPrefix,
}) => {
  own = await startFakeA1111();
  sys = await System.start({ db, redisPrefix, worker: 'none', discord: { guilds: guilds() } });
  // The seam issue 17's linking builds on: a guild worker touches its guild's key space and nothing else.
  const space = `${redisPrefix}:g:${GUILD_A}`;
  const user = `${redisPrefix.replace(/:/g, '-')}-guild`;
  const admin = new Redis(sys.env.REDIS_URL!);
  await admin.call('ACL', 'SETUSER', user, 'on', '>guild-secret', `~${space}:*`, `&${space}:*`, '+@all');
  try {
    const url = new URL(sys.env.REDIS_URL!);
    url.username = user;
    url.password = 'guild-secret';
    await startGuildWorker(sys, own, redisPrefix, { REDIS_URL: url.toString() });
    const photo = await sharp({ create: { width: 96, height: 64, channels: 3, background: '#46a' } })
      .png()
      .toBuffer();
    const mask = await sharp({ create: { width: 96, height: 64, channels: 3, background: '#000' } })
      .composite([{ input: { create: { width: 32, height: 32, channels: 3, background: '#fff' } }, left: 32, top: 16 }])
      .png()
      .toBuffer();
    const file = (name: string, data: Buffer) => ({
      url: sys!.discord.serveFile(`img/${name}`, data, 'image/png'),
      size: data.length,
      filename: name,
      content_type: 'image/png',
    });
    const i = await sys.discord.slashCommand({
      name: 'inpaint',
      options: [{ name: 'prompt', type: 3, value: 'a red door' }],
      attachments: { image: file('photo.png', photo), mask: file('mask.png', mask) },
    });
    const msg = await sys.finalReply(i, 30_000);
    expect(msg.attachments.some((a) => a.filename === 'image-1.png')).toBe(true);
    expect(own.requests.filter((r) => r.path === '/sdapi/v1/img2img')).toHaveLength(1);
    // Once posted, the member's images are gone from both key spaces: the copies its worker read, and
    // the originals they were copied from.
    await expect.poll(() => admin.keys(`${redisPrefix}:*input:*`), { timeout: 5000 }).toEqual([]);
  } finally {
    await admin.call('ACL', 'DELUSER', user);
    admin.disconnect();
  }
});
