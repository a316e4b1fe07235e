import { Redis } from 'ioredis';
import { afterEach, expect } from 'vitest';
import { readBackendStatus } from '../../core/io/backend-status.js';
import { buttonText } from '../../core/messages.js';
import { type FakeA1111, startFakeA1111 } from '../fakes/a1111.js';
import { defaultGuilds, shardForGuild } from '../fakes/discord/ids.js';
import type { FakeGuild, FakeInteraction } from '../fakes/discord/types.js';
import { type FakeReplicate, startFakeReplicate } from '../fakes/replicate.js';
import { type TestDb, test } from '../setup/fixtures.js';
import { ALICE, buttonId, GUILD_ID, type Proc, System } from './harness.js';

/**
 * Two bot processes (gateway shards): the follower serves guild A (admits its jobs, settles them,
 * edits their replies); the other serves another guild, but its sweep opens guild A's space and its
 * handoff moves guild A's job to the shared queue once guild A's box is gone. The follower must
 * then find the job where it is now.
 */

let sys: System | undefined;
let own: FakeA1111 | undefined;
let replicate: FakeReplicate | undefined;
let redis: Redis | undefined;
afterEach(async () => {
  await sys?.stop();
  await own?.close();
  await replicate?.close();
  redis?.disconnect();
  sys = own = replicate = redis = undefined;
});

/** A Replicate run bills 5 s at $0.002/s: $0.01 an attempt. */
const ATTEMPT_USD = 0.01;

/** Guild A, and a guild on the other of two shards (the mover's). */
function guilds(): FakeGuild[] {
  const a = defaultGuilds();
  const mine = shardForGuild(GUILD_ID, 2);
  for (let n = 1n; ; n++) {
    const id = String(BigInt(GUILD_ID) + (n << 22n));
    if (shardForGuild(id, 2) !== mine) return [...a, { id, name: 'Other', channels: [{ id: '4444444444444444499', name: 'general' }] }];
  }
}

async function until<T>(fn: () => Promise<T | undefined | null | false>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * Guild A's job admitted by the follower onto guild A's own queue, whose box is gone; then moved to
 * the shared queue by the other bot process (the follower's handoff never runs in these tests).
 * The shared worker (Replicate only) is not started yet.
 */
async function movedByTheOtherBot(o: {
  db: TestDb;
  redisPrefix: string;
  fake?: Parameters<typeof startFakeReplicate>[0];
}): Promise<{ i: FakeInteraction; jobId: string; mover: Proc }> {
  replicate = await startFakeReplicate({ durationMs: 300, predictTimeS: 5, ...o.fake });
  own = await startFakeA1111();
  sys = await System.start({
    db: o.db,
    redisPrefix: o.redisPrefix,
    bot: 'none',
    worker: 'none',
    discord: { guilds: guilds(), shards: 2 },
    env: {
      DISCORD_SHARD_COUNT: '2',
      BACKENDS: 'replicate',
      REPLICATE_API_TOKEN: 'r8_fake',
      REPLICATE_API_URL: replicate.url,
      REPLICATE_OUTPUT_ORIGINS: replicate.url,
      REPLICATE_USD_PER_SECOND: '0.002',
      DEFAULT_MONTHLY_BUDGET_USD: '5',
    },
    botOverrides: { handoffEveryMs: 3_600_000 },
  });
  redis = new Redis(sys.env.REDIS_URL!);
  sys.env.DISCORD_SHARD_IDS = String(shardForGuild(GUILD_ID, 2));
  await sys.startBot();

  // Guild A's worker reports in, then dies: its last report stays fresh for a few seconds, so the
  // next job is still routed to guild A's own queue, where nothing will take it.
  const space = `${o.redisPrefix}:g:${GUILD_ID}`;
  const worker = await sys.spawn('worker', { env: { WORKER_GUILD_ID: GUILD_ID, A1111_URL: own.url, BACKENDS: 'a1111' } });
  await until(async () => (await readBackendStatus(redis!, space)).some((r) => r.healthy && Date.now() - r.at < 2000));
  worker.child.kill('SIGKILL');
  await worker.exited;
  const i = await sys.imagine({ prompt: 'moved along', steps: 4, user: ALICE });
  const jobId = await until(async () => (await o.db.prisma.job.findFirst())?.id);
  await until(async () => (await redis!.hget(`${o.redisPrefix}:routes`, jobId)) === GUILD_ID);
  await sys.discord.waitFor(() => i.original()?.components.length);

  // The other bot process starts: its first sweep opens guild A's space, its handoff moves the job.
  sys.env.DISCORD_SHARD_IDS = String(1 - shardForGuild(GUILD_ID, 2));
  const mover = await sys.spawn('bot');
  await until(async () => mover.logs.some((l) => l.includes("moved from the guild's own boxes to the shared queue")));
  await until(async () => (await redis!.exists(`${o.redisPrefix}:generate:${jobId}`)) === 1);
  expect(await redis.hget(`${o.redisPrefix}:routes`, jobId)).toBeNull();
  return { i, jobId, mover };
}

const ledgerOf = async (db: TestDb, jobId: string) =>
  (await db.prisma.costLedger.findMany({ where: { jobId } })).map((l) => ({
    backend: l.backend,
    outcome: l.outcome,
    usd: Number(l.costUsd),
  }));

test('a job another bot process moved to the shared queue and that succeeds there on a paid provider: its member gets the image, charged once, and the bill is booked', async ({
  db,
  redisPrefix,
}) => {
  const { i, jobId } = await movedByTheOtherBot({ db, redisPrefix });
  await sys!.startWorker();
  const reply = await sys!.finalReply(i, 30_000);
  expect(reply.attachments.map((a) => a.filename)).toContain('image-1.png');
  const job = await db.prisma.job.findUniqueOrThrow({ where: { id: jobId } });
  expect(job.status).toBe('succeeded');
  expect(Number(job.costUsd)).toBeCloseTo(ATTEMPT_USD, 6);
  expect(await ledgerOf(db, jobId)).toEqual([{ backend: 'replicate', outcome: 'succeeded', usd: ATTEMPT_USD }]);
  const usage = await db.prisma.memberUsage.findFirstOrThrow();
  expect([usage.images, usage.inFlight]).toEqual([1, 0]);
}, 90_000);

test('a job another bot process moved to the shared queue and that fails there for good: every billed attempt is booked, the member is refunded', async ({
  db,
  redisPrefix,
}) => {
  const { i, jobId } = await movedByTheOtherBot({ db, redisPrefix, fake: { failWith: 'CUDA out of memory' } });
  await sys!.startWorker();
  const reply = await sys!.finalReply(i, 60_000);
  expect(reply.content).toMatch(/refunded/);
  const job = await db.prisma.job.findUniqueOrThrow({ where: { id: jobId } });
  expect(job.status).toBe('failed');
  // One row per prediction that ran, the last included: settled at the final failure, not the first.
  const ledger = await ledgerOf(db, jobId);
  expect(replicate!.predictions.length).toBeGreaterThanOrEqual(1);
  expect(ledger).toEqual(replicate!.predictions.map(() => ({ backend: 'replicate', outcome: 'failed', usd: ATTEMPT_USD })));
  expect(Number(job.costUsd)).toBeCloseTo(ATTEMPT_USD * ledger.length, 6);
  const usage = await db.prisma.memberUsage.findFirstOrThrow();
  expect([usage.images, usage.inFlight]).toEqual([0, 0]);
}, 90_000);

test('Cancel pressed while a job another bot process moved waits in the shared queue: "Cancelled" is true, the job never runs, the quota comes back', async ({
  db,
  redisPrefix,
}) => {
  const { i, jobId } = await movedByTheOtherBot({ db, redisPrefix });
  const msg = i.original()!;
  const press = await sys!.discord.buttonPress({ customId: buttonId(msg, 'Cancel'), messageId: msg.id, user: ALICE });
  expect((await sys!.answerOf(press)).content).toBe(buttonText.cancelled);
  expect(await redis!.exists(`${redisPrefix}:generate:${jobId}`)).toBe(0);
  // A shared worker that comes along finds nothing to run.
  await sys!.startWorker();
  await new Promise((r) => setTimeout(r, 2000));
  expect(replicate!.predictions).toHaveLength(0);
  expect((await db.prisma.job.findUniqueOrThrow({ where: { id: jobId } })).status).toBe('cancelled');
  const usage = await db.prisma.memberUsage.findFirstOrThrow();
  expect([usage.images, usage.inFlight]).toEqual([0, 0]);
}, 90_000);
