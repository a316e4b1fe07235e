import type { Job } from 'bullmq';
import { Redis } from 'ioredis';
import { afterEach, describe, expect } from 'vitest';
import { loadConfig, workerConfigSchema } from '../../core/config.js';
import { type JobPayload, parseImagineOptions } from '../../core/generation.js';
import { createLinkUser, deleteUsers, guildPrefix, linkUserName, newLinkId } from '../../core/io/link.js';
import { createLogger } from '../../core/io/logger.js';
import { createGenerateQueue, enqueueJob, type GenerateQueue } from '../../core/io/queue.js';
import { type RunningWorker, startWorker } from '../../worker/main.js';
import { startFakeA1111 } from '../fakes/a1111.js';
import { connectionsOf, deleteTestUsers, TEST_REDIS_URL, until, urlAs } from '../setup/acl.js';
import { test } from '../setup/fixtures.js';

const GUILD_A = '4444444444444444441';
const GUILD_B = '4444444444444444442';

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
});

const payload = (jobId: string, prompt: string): JobPayload => ({
  v: 1,
  jobId,
  guildId: null,
  request: { ...parseImagineOptions({ prompt, steps: 4 }), width: 512, height: 512 },
  paidAllowed: false,
  nsfwAllowed: true,
});

async function stateOf(queue: GenerateQueue, jobId: string): Promise<string> {
  return (await queue.getJob(jobId))?.getState() ?? 'missing';
}

/** Guild A's linked worker (in-process, with only its link's credentials), and the operator's admin connection. */
async function setup(redisPrefix: string) {
  cleanups.push(() => deleteTestUsers(redisPrefix));
  const admin = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: null });
  cleanups.push(async () => admin.disconnect());
  const a1111 = await startFakeA1111({});
  cleanups.push(() => a1111.close());
  const linkId = newLinkId();
  const user = linkUserName(redisPrefix, linkId);
  const password = await createLinkUser(admin, redisPrefix, GUILD_A, linkId);
  const linkUrl = urlAs(user, password);
  const config = loadConfig(workerConfigSchema, {
    REDIS_URL: linkUrl,
    QUEUE_PREFIX: redisPrefix,
    WORKER_GUILD_ID: GUILD_A,
    A1111_URL: a1111.url,
    NSFW_CLASSIFIER: 'off',
    PROGRESS_POLL_MS: '50',
    JOB_LOCK_MS: '2000',
    STALLED_CHECK_MS: '1000',
  });
  const worker: RunningWorker = await startWorker(config, createLogger({ level: 'silent' }));
  // A revoked worker's stop may wait on BullMQ's own connections retrying; the test does not need it to finish.
  cleanups.push(() => Promise.race([worker.stop(), new Promise((r) => setTimeout(r, 5000))]));
  const queueOf = (prefix: string) => {
    const q = createGenerateQueue(admin, prefix);
    cleanups.push(() => q.close());
    return q;
  };
  return { admin, a1111, linkId, user, password, linkUrl, worker, queueOf };
}

describe('a linked box under its Redis ACL', () => {
  test("serves its own guild's job through BullMQ, and cannot read another guild's job, prompt or result, nor the shared queue", async ({
    redisPrefix,
  }) => {
    const s = await setup(redisPrefix);
    const own = s.queueOf(guildPrefix(redisPrefix, GUILD_A));
    const other = s.queueOf(guildPrefix(redisPrefix, GUILD_B));
    const shared = s.queueOf(redisPrefix);
    await enqueueJob(other, payload('b1', 'the other guild secret prompt'));
    await enqueueJob(shared, payload('s1', 'a shared queue prompt'));
    // Another guild's finished result sits in Redis too.
    await s.admin.set(`${guildPrefix(redisPrefix, GUILD_B)}:img:b0:0`, 'png bytes');
    await enqueueJob(own, payload('a1', 'a lighthouse'));
    const done = await until(async () => ((await stateOf(own, 'a1')) === 'completed' ? own.getJob('a1') : undefined));
    expect((done as Job).returnvalue).toMatchObject({ backend: 'a1111' });
    expect(s.a1111.jobs.map((j) => j.prompt)).toEqual(['a lighthouse']);
    expect(await s.admin.exists(`${guildPrefix(redisPrefix, GUILD_A)}:img:a1:0`)).toBe(1);
    expect(await stateOf(other, 'b1')).toBe('waiting');
    expect(await stateOf(shared, 's1')).toBe('waiting');

    const as = new Redis(s.linkUrl, { enableReadyCheck: false, maxRetriesPerRequest: 0 });
    as.on('error', () => undefined);
    cleanups.push(async () => as.disconnect());
    const B = guildPrefix(redisPrefix, GUILD_B);
    const refused: [string, ...(string | number)[]][] = [
      ['hgetall', `${B}:generate:b1`],
      ['hget', `${B}:generate:b1`, 'data'],
      ['get', `${B}:img:b0:0`],
      ['zrange', `${B}:generate:prioritized`, 0, -1],
      ['lrange', `${redisPrefix}:generate:wait`, 0, -1],
      ['hgetall', `${redisPrefix}:generate:s1`],
      ['lpush', `${redisPrefix}:generate:wait`, 'x'],
      ['keys', '*'],
      ['scan', '0'],
      ['eval', "return redis.call('hgetall', KEYS[1])", 1, `${B}:generate:b1`],
      ['eval', "return redis.call('hgetall', ARGV[1])", 0, `${B}:generate:b1`],
      ['publish', `${B}:cancel`, 'b1'],
      ['acl', 'list'],
      ['config', 'get', '*'],
      ['flushall'],
    ];
    for (const [cmd, ...args] of refused) await expect(as.call(cmd, ...args), cmd).rejects.toThrow(/NOPERM|can't access/);
    // BullMQ itself, pointed at the other guild's queue with these credentials.
    const peek = createGenerateQueue(as, B);
    await expect(peek.getJob('b1')).rejects.toThrow(/NOPERM/);
    await peek.close();
  });

  test('after unlink (ACL DELUSER) or rotate its connections are dropped, the old password is refused and it gets no more jobs', async ({
    redisPrefix,
  }) => {
    const s = await setup(redisPrefix);
    const own = s.queueOf(guildPrefix(redisPrefix, GUILD_A));
    await enqueueJob(own, payload('a1', 'first'));
    await until(async () => (await stateOf(own, 'a1')) === 'completed');
    expect(await connectionsOf(s.admin, s.user)).toBeGreaterThan(0);

    // Rotate: the same link, a new password; whoever held the old one is cut off.
    await createLinkUser(s.admin, redisPrefix, GUILD_A, s.linkId);
    expect(await connectionsOf(s.admin, s.user)).toBe(0);
    const old = new URL(s.linkUrl);
    await expect(s.admin.duplicate().call('AUTH', decodeURIComponent(old.username), decodeURIComponent(old.password))).rejects.toThrow(
      /WRONGPASS/,
    );

    await enqueueJob(own, payload('a2', 'second'));
    // Its reconnections keep failing: the job is never taken (checked over a few lock periods).
    await new Promise((r) => setTimeout(r, 3000));
    expect(await stateOf(own, 'a2')).toBe('waiting');
    expect(s.a1111.jobs.map((j) => j.prompt)).toEqual(['first']);

    // Unlink: the user is gone.
    expect(await deleteUsers(s.admin, [s.user])).toBe(1);
    expect(await connectionsOf(s.admin, s.user)).toBe(0);
  });
});
