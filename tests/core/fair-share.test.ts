import { Redis } from 'ioredis';
import { afterAll, expect } from 'vitest';
import { takeSharedTurn } from '../../core/io/fair-share.js';
import { memberPart, sharedQueuePriority } from '../../core/quota.js';
import { test } from '../setup/fixtures.js';

const redis = new Redis(process.env.TEST_REDIS_URL || 'redis://127.0.0.1:6379');
afterAll(() => redis.disconnect());

/** Enqueues like the bot: takes the guild's turn, then puts the job in the prioritized set as BullMQ scores it. */
async function enqueue(prefix: string, guildId: string, jobId: string, usedBefore: number): Promise<number> {
  const prioritizedKey = `${prefix}:generate:prioritized`;
  const turn = await takeSharedTurn(redis, { prefix, prioritizedKey, guildId, jobId, now: Date.now(), memberPart: memberPart(usedBefore) });
  const priority = sharedQueuePriority(turn, usedBefore);
  const counter = await redis.incr(`${prefix}:counter`);
  await redis.zadd(prioritizedKey, priority * 2 ** 32 + counter, jobId);
  return priority;
}

async function order(prefix: string): Promise<string[]> {
  return redis.zrange(`${prefix}:generate:prioritized`, 0, -1);
}

test("one guild's flood of fresh members interleaves with another guild's jobs, turn by turn", async ({ redisPrefix }) => {
  for (const id of ['a1', 'a2', 'a3']) await enqueue(redisPrefix, 'A', id, 0);
  await enqueue(redisPrefix, 'B', 'b1', 0);
  await enqueue(redisPrefix, 'B', 'b2', 0);
  expect(await order(redisPrefix)).toEqual(['a1', 'b1', 'a2', 'b2', 'a3']);
});

test("inside one guild the member with least today goes first, as on the guild's own queue", async ({ redisPrefix }) => {
  // Alice has had 0, 1, 2 images before each of her jobs; Bob none.
  for (const [id, used] of [
    ['alice1', 0],
    ['alice2', 1],
    ['alice3', 2],
  ] as const)
    await enqueue(redisPrefix, 'A', id, used);
  await enqueue(redisPrefix, 'A', 'bob1', 0);
  expect(await order(redisPrefix)).toEqual(['alice1', 'bob1', 'alice2', 'alice3']);
});

test('a job that left the waiting set (started, cancelled) stops counting for its guild', async ({ redisPrefix }) => {
  await enqueue(redisPrefix, 'A', 'a1', 0);
  await enqueue(redisPrefix, 'A', 'a2', 0);
  await redis.zrem(`${redisPrefix}:generate:prioritized`, 'a1'); // a worker took it
  expect(await enqueue(redisPrefix, 'A', 'a3', 0)).toBe(sharedQueuePriority(1, 0));
  expect(await redis.zrange(`${redisPrefix}:fair:A`, 0, -1)).toEqual(['a2', 'a3']);
});
