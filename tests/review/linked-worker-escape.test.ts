import { Redis } from 'ioredis';
import { afterEach, expect } from 'vitest';
import { Handoff } from '../../bot/jobs/handoff.js';
import { KeySpaces } from '../../bot/jobs/spaces.js';
import { type JobPayload, parseImagineOptions } from '../../core/generation.js';
import { createLinkUser, guildPrefix, linkUserName, newLinkId } from '../../core/io/link.js';
import { createGenerateQueue, enqueueJob } from '../../core/io/queue.js';
import { QueuePositions } from '../../core/io/queue-position.js';
import { ResultStore } from '../../core/io/results.js';
import { silent } from '../bot/jobs/doubles.js';
import { deleteTestUsers, TEST_REDIS_URL, urlAs } from '../setup/acl.js';
import { test } from '../setup/fixtures.js';

const GUILD_A = '5555555555555555551'; // the hostile linked guild
const GUILD_B = '5555555555555555552'; // a victim guild

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
});

async function linkedConnection(admin: Redis, prefix: string) {
  cleanups.push(() => deleteTestUsers(prefix));
  const linkId = newLinkId();
  const password = await createLinkUser(admin, prefix, GUILD_A, linkId);
  const box = new Redis(urlAs(linkUserName(prefix, linkId), password), { maxRetriesPerRequest: null });
  cleanups.push(async () => box.disconnect());
  return box;
}

test("a linked worker's forged job in its own queue is moved by the bot's handoff into the SHARED queue, with the grants it chose", async ({
  redisPrefix,
}) => {
  const admin = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: null });
  cleanups.push(async () => admin.disconnect());
  const box = await linkedConnection(admin, redisPrefix);

  // The hostile box, under its own ACL, adds a job of its choosing to its guild's queue.
  const own = createGenerateQueue(box, guildPrefix(redisPrefix, GUILD_A));
  cleanups.push(() => own.close());
  const forged: JobPayload = {
    v: 1,
    jobId: 'forged-1',
    guildId: GUILD_B,
    request: { ...parseImagineOptions({ prompt: 'forged by guild A', steps: 4 }), width: 512, height: 512 },
    paidAllowed: true,
    budgetLeftUsd: 1_000_000,
    budget: { month: new Date().toISOString().slice(0, 7), limitUsd: 1_000_000, spentUsd: 0 },
    nsfwAllowed: true,
  };
  await enqueueJob(own, forged, 1);

  // The bot: its key spaces (guild A's space is open, as after any job routed there), and its handoff.
  const shared = createGenerateQueue(admin, redisPrefix);
  cleanups.push(() => shared.close());
  const spaces = new KeySpaces({
    redis: admin,
    redisUrl: TEST_REDIS_URL,
    prefix: redisPrefix,
    resultTtlSeconds: 3600,
    shared: {
      queue: shared,
      results: new ResultStore(admin, redisPrefix, 3600),
      positions: new QueuePositions(
        admin,
        { wait: shared.toKey('wait'), prioritized: shared.toKey('prioritized'), active: shared.toKey('active'), delayed: shared.toKey('delayed') },
        redisPrefix,
      ),
    },
    log: silent,
    now: Date.now,
    sharedBoxGuilds: [],
  });
  cleanups.push(() => spaces.close());
  await spaces.guild(GUILD_A);
  let t = Date.now();
  const handoff = new Handoff({ spaces, redis: admin, lifecycle: { moving: () => undefined, requeued: () => undefined }, log: silent, now: () => t });
  // The box simply stops reporting: two passes a heartbeat apart.
  await handoff.check();
  t += 5000;
  await handoff.check();

  // Expected: the bot only ever moves jobs it admitted itself; nothing the box wrote reaches the shared queue.
  const moved = await shared.getJob('forged-1');
  expect(moved?.data, 'forged job now on the shared queue with paid/nsfw grants for another guild').toBeUndefined();
});

test('a linked worker may EVAL: a busy Lua loop stalls the shared Redis for every other client (bot, other guilds)', async ({ redisPrefix }) => {
  const admin = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: null });
  cleanups.push(async () => admin.disconnect());
  const box = await linkedConnection(admin, redisPrefix);
  // Bounded to ~1.5 s here; `while true do end` (after a write, so SCRIPT KILL is refused) never ends.
  const spin = box.eval("local s = redis.call('TIME')[1] while tonumber(redis.call('TIME')[1]) - s < 2 do end return 1", 0);
  await new Promise((r) => setTimeout(r, 100));
  const t0 = Date.now();
  await admin.ping();
  const blockedMs = Date.now() - t0;
  await spin;
  expect(blockedMs, 'the operator connection was blocked by the linked worker').toBeLessThan(200);
});
