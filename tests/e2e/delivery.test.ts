import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import { afterEach, expect } from 'vitest';
import { DEFAULTS } from '../fakes/discord/ids.js';
import { test } from '../setup/fixtures.js';
import { emptyCwd, sourceEntryArgs } from '../setup/processes.js';
import { ALICE, System } from './harness.js';

let sys: System | undefined;
afterEach(async () => {
  await sys?.stop();
  sys = undefined;
});

const GENERAL = DEFAULTS.generalChannelId;
const LOG_CHANNEL = DEFAULTS.nsfwChannelId;

test('a channel that answers 403 to every post: the result is tried a bounded number of times, then recorded as undeliverable, refunded, and moderators are told; the bot log keeps no token and no image bytes', async ({
  db,
  redisPrefix,
}) => {
  sys = await System.start({
    db,
    redisPrefix,
    captureBotLog: true,
    botOverrides: {
      // Every post goes to the channel with the bot's token, as after 14 minutes.
      tokenLifetimeMs: 1,
      sweepIntervalMs: 200,
      deliveryRetry: { refusedTries: 3, failedTries: 3, firstWaitMs: 300, maxWaitMs: 600 },
    },
  });
  await db.prisma.guildSettings.create({ data: { guildId: DEFAULTS.guildId, logChannelId: LOG_CHANNEL } });
  sys.discord.failNext({
    pathPrefix: `/channels/${GENERAL}/messages`,
    status: 403,
    count: 10_000,
    body: { code: 50013, message: 'Missing Permissions' },
  });
  // The first answer fails too (and any reply edit), so an error carrying the interaction token in its route is logged.
  sys.discord.failNext({ method: 'POST', pathPrefix: '/interactions/', status: 500, count: 20 });
  sys.discord.failNext({ method: 'PATCH', pathPrefix: '/webhooks/', status: 500, count: 20 });

  const i = await sys.imagine({ prompt: 'a lighthouse at dusk', steps: 2 });
  const notice = await sys.discord.waitFor(
    () => sys!.discord.channelMessages(LOG_CHANNEL).find((m) => m.content.includes('could not be posted')),
    20_000,
  );
  expect(notice.content).toContain(`<#${GENERAL}>`);
  expect(notice.content).toContain('403 50013 Missing Permissions');
  expect(notice.content).toContain('refunded');

  const posts = () => sys!.discord.requests.filter((r) => r.method === 'POST' && r.path === `/channels/${GENERAL}/messages`);
  expect(posts()).toHaveLength(3);
  await new Promise((r) => setTimeout(r, 1500));
  expect(posts()).toHaveLength(3);

  const job = await db.prisma.job.findFirstOrThrow();
  expect(job).toMatchObject({ status: 'failed', errorCode: 'undeliverable', deliveryAttempts: 3, interactionToken: null });
  expect(job.undeliverableAt).not.toBeNull();
  expect((await db.prisma.memberUsage.findFirstOrThrow({ where: { userId: ALICE.id } })).images).toBe(0);

  const log = sys.botLogs.join('\n');
  expect(log).toContain('delivery given up');
  expect(log).toMatch(/"route":"\/(interactions\/\d+\/:token\/callback|webhooks\/1111111111111111111\/:token\/messages\/@original)"/);
  expect(log).not.toContain(i.token);
  expect(log).not.toContain('fake-token');
  expect(log).not.toMatch(/"files"|"requestBody"|"data":\[|"type":"Buffer"/);
  for (const line of sys.botLogs) expect(() => JSON.parse(line)).not.toThrow();

  // Without a log channel the owner finds it in `npm run status`.
  const { stdout } = await promisify(execFile)(process.execPath, sourceEntryArgs('scripts/status.ts'), {
    cwd: emptyCwd(),
    env: { ...process.env, DATABASE_URL: db.url, REDIS_URL: sys.env.REDIS_URL, QUEUE_PREFIX: redisPrefix },
  });
  expect(stdout).toContain('Results Discord refused');
  expect(stdout).toMatch(new RegExp(`${GENERAL}\\s+403 50013 Missing Permissions\\s+1`));
});

test('images lost from Redis while Discord was failing (a Redis restart, say): the retried post says the result expired and the quota was refunded, and it is', async ({
  db,
  redisPrefix,
}) => {
  sys = await System.start({
    db,
    redisPrefix,
    botOverrides: { sweepIntervalMs: 200, deliveryRetry: { refusedTries: 5, failedTries: 5, firstWaitMs: 500, maxWaitMs: 500 } },
  });
  // Every edit of the reply fails until Discord recovers: the result's first post among them.
  sys.discord.failNext({
    method: 'PATCH',
    pathPrefix: '/webhooks/',
    status: 403,
    count: 10_000,
    body: { code: 50013, message: 'Missing Permissions' },
  });
  const i = await sys.imagine({ prompt: 'a lighthouse at dusk', steps: 2 });
  const job = await sys.discord.waitForAsync(async () => {
    const j = await db.prisma.job.findFirst();
    return j && j.status === 'succeeded' && j.deliveryAttempts >= 1 ? j : undefined;
  }, 15_000);
  expect((await db.prisma.memberUsage.findFirstOrThrow({ where: { userId: ALICE.id } })).images).toBe(1);

  const redis = new Redis(sys.env.REDIS_URL!);
  try {
    const keys = await redis.keys(`${redisPrefix}:img:${job.id}:*`);
    expect(keys.length).toBeGreaterThan(0);
    await redis.del(...keys);
  } finally {
    redis.disconnect();
  }
  sys.discord.stopInjecting();

  const msg = await sys.finalReply(i, 15_000);
  expect(msg.attachments).toHaveLength(0);
  expect(msg.content).toContain('the result expired before it could be posted. Your quota was refunded.');
  for (let n = 0; n < 100 && (await db.prisma.job.findFirstOrThrow()).deliveredAt === null; n++)
    await new Promise((r) => setTimeout(r, 50));
  expect(await db.prisma.job.findFirstOrThrow()).toMatchObject({ status: 'failed', errorCode: 'expired', deliveredAt: expect.any(Date) });
  expect((await db.prisma.memberUsage.findFirstOrThrow({ where: { userId: ALICE.id } })).images).toBe(0);
  // The box's attempt stays booked: it ran.
  expect(await db.prisma.costLedger.count({ where: { jobId: job.id } })).toBe(1);
});
