import { Redis } from 'ioredis';
import { afterEach, expect } from 'vitest';
import { Handoff } from '../../../bot/jobs/handoff.js';
import { KeySpaces } from '../../../bot/jobs/spaces.js';
import { PgJobStore } from '../../../bot/store/jobs.js';
import { type JobPayload, parseImagineOptions, toJobPayload } from '../../../core/generation.js';
import { createLinkUser, guildPrefix, linkUserName, newLinkId } from '../../../core/io/link.js';
import { createGenerateQueue, enqueueJob } from '../../../core/io/queue.js';
import { QueuePositions } from '../../../core/io/queue-position.js';
import { ResultStore } from '../../../core/io/results.js';
import type { ForgottenJob, StoredJob } from '../../../core/ports.js';
import { MEMBER_SPAN, memberPart, queuePriority } from '../../../core/quota.js';
import { GUILD_HEARTBEAT_MS } from '../../../core/routing.js';
import { deleteTestUsers, TEST_REDIS_URL, urlAs } from '../../setup/acl.js';
import { test } from '../../setup/fixtures.js';
import { silent } from './doubles.js';

/**
 * A guild's linked worker is the guild's, not the operator's: under its Redis user it may write any
 * job into its guild's queue. When its boxes go quiet the bot's handoff moves that queue's jobs to
 * the shared queue, run by the operator's workers and paid providers: only jobs the bot queued
 * there itself, unaltered, may go, with the grants and member's usage the bot gave them.
 */

const GUILD_A = '5555555555555555551'; // the linked guild, its worker hostile
const GUILD_B = '5555555555555555552'; // another guild
const REQUEST = { ...parseImagineOptions({ prompt: 'x', steps: 4 }), width: 512, height: 512 };

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
});

async function setup(redisPrefix: string, o: { ownRecord?: (jobId: string) => Promise<StoredJob | ForgottenJob | null> } = {}) {
  const admin = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: null });
  cleanups.push(async () => admin.disconnect());
  cleanups.push(() => deleteTestUsers(redisPrefix));
  const linkId = newLinkId();
  const password = await createLinkUser(admin, redisPrefix, GUILD_A, linkId);
  const box = new Redis(urlAs(linkUserName(redisPrefix, linkId), password), { maxRetriesPerRequest: null });
  cleanups.push(async () => box.disconnect());
  // The guild's worker, under its own ACL.
  const boxQueue = createGenerateQueue(box, guildPrefix(redisPrefix, GUILD_A));
  cleanups.push(() => boxQueue.close());

  const shared = createGenerateQueue(admin, redisPrefix);
  cleanups.push(() => shared.close());
  const keys = {
    wait: shared.toKey('wait'),
    prioritized: shared.toKey('prioritized'),
    active: shared.toKey('active'),
    delayed: shared.toKey('delayed'),
  };
  const spaces = new KeySpaces({
    redis: admin,
    redisUrl: TEST_REDIS_URL,
    prefix: redisPrefix,
    resultTtlSeconds: 3600,
    shared: { queue: shared, results: new ResultStore(admin, redisPrefix, 3600), positions: new QueuePositions(admin, keys, redisPrefix) },
    log: silent,
    now: Date.now,
    sharedBoxGuilds: [],
    sealSecret: 'test-discord-token',
    ...(o.ownRecord ? { ownRecord: o.ownRecord } : {}),
  });
  cleanups.push(() => spaces.close());
  const own = await spaces.guild(GUILD_A);
  let t = Date.now();
  const handoff = new Handoff({
    spaces,
    redis: admin,
    lifecycle: { moving: () => undefined, requeued: () => undefined },
    log: silent,
    now: () => t,
  });
  // Guild A's box never reports: two passes a heartbeat apart hand its queue over.
  const boxGone = async () => {
    await handoff.check();
    t += GUILD_HEARTBEAT_MS;
    await handoff.check();
  };
  return { admin, box, boxQueue, shared, spaces, own, boxGone };
}

const genuine = (jobId: string): JobPayload =>
  toJobPayload({ jobId, guildId: GUILD_A, request: REQUEST }, { budgetLeftUsd: 0.5, nsfwAllowed: false });

test('a job the linked worker wrote into its own queue stays there: never moved to the shared queue with the grants it chose', async ({
  redisPrefix,
}) => {
  const { boxQueue, shared, boxGone } = await setup(redisPrefix);
  const forged: JobPayload = {
    v: 1,
    jobId: 'forged-1',
    guildId: GUILD_B,
    request: REQUEST,
    paidAllowed: true,
    budgetLeftUsd: 1_000_000,
    budget: { month: new Date().toISOString().slice(0, 7), limitUsd: 1_000_000, spentUsd: 0 },
    nsfwAllowed: true,
  };
  await enqueueJob(boxQueue, forged, 1);
  // Even with a seal-looking field of its own making.
  await enqueueJob(boxQueue, { ...forged, jobId: 'forged-2', guildId: GUILD_A, seal: { usedBefore: 0, mac: '00'.repeat(32) } }, 1);

  await boxGone();

  expect(await shared.getJob('forged-1')).toBeUndefined();
  expect(await shared.getJob('forged-2')).toBeUndefined();
  expect(await boxQueue.getJob('forged-1')).toBeDefined();
});

test("the bot's own job is handed off unaltered, its priority from the member's usage the bot saw, not the one the worker rewrote", async ({
  redisPrefix,
}) => {
  const { box, own, shared, spaces, boxGone } = await setup(redisPrefix);
  const payload = genuine('real-1');
  await spaces.addOwn(payload, GUILD_A, 7);
  // The worker moves its member to the front of the line (BullMQ keeps a job's opts in its hash).
  await box.hset(own.queue.toKey('real-1'), 'opts', JSON.stringify({ priority: 1, attempts: 3 }));

  await boxGone();

  const moved = await shared.getJob('real-1');
  expect(moved?.data).toEqual({ ...payload, boxesAllowed: false });
  expect((moved?.opts.priority ?? 0) % MEMBER_SPAN).toBe(memberPart(7));
  expect(await own.queue.getJob('real-1')).toBeUndefined();
});

test("the bot's own job altered by the worker (same id, new grants) stays in the guild's queue", async ({ redisPrefix }) => {
  const { box, own, shared, spaces, boxGone } = await setup(redisPrefix);
  await spaces.addOwn(genuine('real-2'), GUILD_A, 0);
  const sealed = (await own.queue.getJob('real-2'))!.data;
  const altered = { ...sealed, paidAllowed: true, budgetLeftUsd: 1_000_000, nsfwAllowed: true };
  await box.hset(own.queue.toKey('real-2'), 'data', JSON.stringify(altered));

  await boxGone();

  expect(await shared.getJob('real-2')).toBeUndefined();
  expect(await own.queue.getJob('real-2')).toBeDefined();
});

test('a sealed job the worker puts back after the bot settled it is not run again on the shared queue', async ({ redisPrefix }) => {
  const { boxQueue, own, shared, spaces, boxGone } = await setup(redisPrefix);
  await spaces.addOwn(genuine('real-3'), GUILD_A, 0);
  const sealed = (await own.queue.getJob('real-3'))!.data;
  // Settled: the bot drops its queue entry and route.
  await spaces.jobs.remove('real-3');
  await enqueueJob(boxQueue, sealed, 1);

  await boxGone();

  expect(await shared.getJob('real-3')).toBeUndefined();
});

test("a job the previous version queued on a guild's own queue, before seals, is still handed off when the box goes, as the bot recorded it", async ({
  redisPrefix,
  db,
}) => {
  const store = new PgJobStore(db.pool);
  const admitted = await store.reserve({
    actor: { guildId: GUILD_A, channelId: '4444444444444444444', userId: '3333333333333333333', channelNsfw: false },
    interaction: { applicationId: '1111111111111111111', interactionId: '6666666666666666666', token: 'tok' },
    request: REQUEST,
    day: new Date().toISOString().slice(0, 10),
    deploymentDailyLimit: 100,
    maxInFlight: 50,
    monthStart: `${new Date().toISOString().slice(0, 7)}-01`,
    deploymentMonthlyBudgetUsd: 1,
  });
  if (!admitted.ok) throw new Error(admitted.reason);
  const jobId = admitted.jobId;
  const { box, own, shared, spaces, boxGone } = await setup(redisPrefix, { ownRecord: (id) => store.get(id) });
  // What the previous version's addOwn did: the route, then the payload as it was, no seal.
  const before = toJobPayload(
    { jobId, guildId: GUILD_A, request: REQUEST },
    { budgetLeftUsd: 0.5, nsfwAllowed: true, budget: { month: new Date().toISOString().slice(0, 7), limitUsd: 1, spentUsd: 0.5 } },
  );
  await spaces.route(jobId, GUILD_A);
  await enqueueJob(own.queue, before, queuePriority(2));
  // The guild's worker may have rewritten it meanwhile: what moves is the bot's record, free backends only.
  await box.hset(own.queue.toKey(jobId), 'data', JSON.stringify({ ...before, request: { ...REQUEST, prompt: 'altered', steps: 5000 } }));

  await boxGone();

  const moved = await shared.getJob(jobId);
  expect(moved?.data).toEqual({
    ...toJobPayload({ jobId, guildId: GUILD_A, request: REQUEST }, { budgetLeftUsd: 0, nsfwAllowed: false }),
    boxesAllowed: false,
  });
  expect(await own.queue.getJob(jobId)).toBeUndefined();
});

test('an unsealed job the bot has no open record of in that guild stays in its queue', async ({ redisPrefix, db }) => {
  const store = new PgJobStore(db.pool);
  const { boxQueue, spaces, shared, boxGone } = await setup(redisPrefix, { ownRecord: (id) => store.get(id) });
  const unknown = '0b5e8a4e-9a4c-4d5e-8f3a-0c6f1f3a2b11';
  await spaces.route(unknown, GUILD_A);
  await enqueueJob(boxQueue, genuine(unknown), 1);
  await enqueueJob(boxQueue, genuine('not-a-uuid'), 1);

  await boxGone();

  expect(await shared.getJob(unknown)).toBeUndefined();
  expect(await shared.getJob('not-a-uuid')).toBeUndefined();
  expect(await boxQueue.getJob(unknown)).toBeDefined();
});
