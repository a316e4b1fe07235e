import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterEach, expect, vi } from 'vitest';
import { createCancel } from '../../../bot/jobs/cancel.js';
import { Handoff } from '../../../bot/jobs/handoff.js';
import { JobLifecycle } from '../../../bot/jobs/lifecycle.js';
import { QueueBoard } from '../../../bot/jobs/queue-board.js';
import { KeySpaces } from '../../../bot/jobs/spaces.js';
import { PgJobStore } from '../../../bot/store/jobs.js';
import { parseImagineOptions, toJobPayload } from '../../../core/generation.js';
import { createGenerateQueue, GENERATE_QUEUE, QueueEvents } from '../../../core/io/queue.js';
import { QueuePositions } from '../../../core/io/queue-position.js';
import { ResultStore } from '../../../core/io/results.js';
import type { ReserveInput } from '../../../core/ports.js';
import { test } from '../../setup/fixtures.js';
import { REF, recordingEdits, silent } from './doubles.js';

/**
 * Two bot processes share one Redis, each with its own KeySpaces (as each bot process has): A
 * admitted a job onto its guild's own queue and follows it; B's handoff moved it to the shared
 * queue. Nothing here delivers the shared queue's events to A, so A must find the job on its own.
 */

const REDIS_URL = process.env.TEST_REDIS_URL || 'redis://127.0.0.1:6379';
const GUILD = '2222222222222222222';
const CHANNEL = '4444444444444444444';
const REQUEST = parseImagineOptions({ prompt: 'x', seed: 1 });

const closers: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of closers.splice(0).reverse()) await c().catch(() => undefined);
});

function reserveInput(): ReserveInput {
  return {
    actor: { guildId: GUILD, channelId: CHANNEL, userId: '3333333333333333333', channelNsfw: false },
    interaction: REF,
    request: REQUEST,
    day: new Date().toISOString().slice(0, 10),
    deploymentDailyLimit: 10,
    maxInFlight: 10,
    monthStart: `${new Date().toISOString().slice(0, 7)}-01`,
    deploymentMonthlyBudgetUsd: 5,
  };
}

/** One bot process's KeySpaces, as bot/main.ts builds it. */
function processSpaces(redis: Redis, prefix: string): KeySpaces {
  const queue = createGenerateQueue(redis, prefix);
  const keys = {
    wait: queue.toKey('wait'),
    prioritized: queue.toKey('prioritized'),
    active: queue.toKey('active'),
    delayed: queue.toKey('delayed'),
  };
  const spaces = new KeySpaces({
    redis,
    redisUrl: REDIS_URL,
    prefix,
    resultTtlSeconds: 3600,
    shared: { queue, results: new ResultStore(redis, prefix, 3600), positions: new QueuePositions(redis, keys, prefix) },
    log: silent,
    now: Date.now,
    sharedBoxGuilds: '*',
    sealSecret: 'test-discord-token',
  });
  closers.push(
    () => queue.close(),
    () => spaces.close(),
  );
  return spaces;
}

test('Cancel through the process following a job that another bot process moved to the shared queue takes it out of the shared queue: "cancelled" is true, the quota comes back', async ({
  db,
  redisPrefix,
}) => {
  const redis = new Redis(REDIS_URL);
  closers.push(() => redis.quit());
  const store = new PgJobStore(db.pool);
  const r = await store.reserve(reserveInput());
  if (!r.ok) throw new Error('not admitted');
  const a = processSpaces(redis, redisPrefix);
  const b = processSpaces(redis, redisPrefix);
  await a.addOwn(toJobPayload({ jobId: r.jobId, guildId: GUILD, request: REQUEST }, { budgetLeftUsd: 5, nsfwAllowed: false }), GUILD, 0);
  // B's sweep touches the job (its guild space opens), then B moves it (as when a guild worker gives it back).
  await b.of(r.jobId);
  await new Handoff({
    spaces: b,
    redis,
    lifecycle: { moving: () => undefined, requeued: () => undefined },
    log: silent,
    now: Date.now,
  }).handBack(r.jobId);
  expect(await (await a.shared.queue.getJob(r.jobId))?.getState()).toBe('prioritized');

  const lifecycle = new JobLifecycle({
    store,
    results: a.shared.results,
    queue: a.jobs,
    board: new QueueBoard({
      positions: { read: async () => ({ places: new Map(), active: 0, waiting: 0, statuses: [] }) },
      log: silent,
      now: Date.now,
      ownsGuild: () => true,
    }),
    post: { post: async () => undefined },
    edits: recordingEdits(),
    log: silent,
    now: Date.now,
    ownsGuild: () => true,
    cancelFlag: (id) => a.cancelFlagOf(id),
  });
  closers.push(() => lifecycle.stop());
  lifecycle.begin(r.jobId, GUILD, CHANNEL, REF, REQUEST);
  const cancel = createCancel({
    queue: a.jobs,
    settle: (id, o) => lifecycle.settle(id, o),
    requestCancel: async () => {
      throw new Error('a waiting job is removed, not flagged');
    },
    earlierTries: (id) => a.earlierTriesOf(id),
  });

  expect(await cancel(r.jobId)).toBe('cancelled');
  // Nothing left to run: the member was told the truth.
  expect(await a.shared.queue.getJob(r.jobId)).toBeUndefined();
  const job = (await db.pool.query(`SELECT status::text FROM jobs WHERE id = $1`, [r.jobId])).rows[0];
  expect(job.status).toBe('cancelled');
  const usage = (await db.pool.query(`SELECT images, in_flight FROM member_usage`)).rows[0];
  expect([usage.images, usage.in_flight]).toEqual([0, 0]);
});

test("a job another bot process settled leaves no route in this one's memory, though its sweep had read it", async ({ redisPrefix }) => {
  const redis = new Redis(REDIS_URL);
  const eventsConnection = new Redis(REDIS_URL, { maxRetriesPerRequest: null });
  closers.push(
    () => redis.quit(),
    () => eventsConnection.quit(),
  );
  const a = processSpaces(redis, redisPrefix);
  const b = processSpaces(redis, redisPrefix);
  const events = new QueueEvents(GENERATE_QUEUE, { connection: eventsConnection, prefix: redisPrefix });
  closers.push(() => events.close());
  b.followShared(events, () => undefined);
  await events.waitUntilReady();
  const payload = toJobPayload({ jobId: randomUUID(), guildId: GUILD, request: REQUEST }, { budgetLeftUsd: 5, nsfwAllowed: false });
  await a.addShared(payload, 0, { fresh: true });
  await b.of(payload.jobId);
  expect(b.rememberedRoutes).toBe(1);
  // A settles it and lets go of its queue entry.
  await a.jobs.remove(payload.jobId);
  expect(a.rememberedRoutes).toBe(0);
  await vi.waitFor(() => expect(b.rememberedRoutes).toBe(0), { timeout: 5000 });
});

test("a job on a guild's own queue that another bot process settled leaves no route in this one's memory, though its sweep had read it", async ({
  redisPrefix,
}) => {
  const redis = new Redis(REDIS_URL);
  closers.push(() => redis.quit());
  const a = processSpaces(redis, redisPrefix);
  const b = processSpaces(redis, redisPrefix);
  const jobIds: string[] = [];
  for (let n = 0; n < 3; n++) {
    const payload = toJobPayload({ jobId: randomUUID(), guildId: GUILD, request: REQUEST }, { budgetLeftUsd: 5, nsfwAllowed: false });
    await a.addOwn(payload, GUILD, 0);
    jobIds.push(payload.jobId);
  }
  // B's sweep reads every open job's route (its positions read): B learns they are on the guild's queue.
  await b.positions.read(jobIds);
  expect(b.rememberedRoutes).toBe(3);
  // A settles them and lets go of their queue entries; B hears nothing on the shared queue.
  for (const id of jobIds) await a.jobs.remove(id);
  expect(a.rememberedRoutes).toBe(0);
  await vi.waitFor(() => expect(b.rememberedRoutes).toBe(0), { timeout: 5000 });
});
