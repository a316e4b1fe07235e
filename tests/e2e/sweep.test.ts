import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { afterEach, expect } from 'vitest';
import { GENERATE_QUEUE } from '../../core/io/queue.js';
import { test } from '../setup/fixtures.js';
import { ALICE, BOB, System } from './harness.js';

let sys: System | undefined;
afterEach(async () => {
  await sys?.stop();
  sys = undefined;
});

test('a bot down longer than the sweep window: its unfinished jobs are given up and refunded (no in-flight count stays stuck), and none runs again', async ({
  db,
  redisPrefix,
}) => {
  sys = await System.start({ db, redisPrefix, worker: 'none', botOverrides: { sweepIntervalMs: 200 } });
  const waiting = await sys.imagine({ prompt: 'still waiting in the queue', user: ALICE });
  const trimmed = await sys.imagine({ prompt: 'finished while the bot was down, then trimmed', user: BOB });
  await sys.discord.waitFor(() => waiting.original()?.content.includes('Queued') && trimmed.original()?.content.includes('Queued'));
  expect((await db.prisma.memberUsage.findMany()).map((u) => u.inFlight)).toEqual([1, 1]);
  await sys.bot!.stop();
  sys.bot = undefined;

  // Three days pass. BOB's job ran and BullMQ let its entry go; ALICE's still waits for a worker.
  const redis = new Redis(process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379');
  const queue = new Queue(GENERATE_QUEUE, { connection: redis, prefix: redisPrefix });
  try {
    const bobJob = await db.prisma.job.findFirstOrThrow({ where: { userId: BOB.id } });
    await queue.remove(bobJob.id);
    await db.prisma.job.update({ where: { id: bobJob.id }, data: { status: 'running', startedAt: new Date() } });
    await db.pool.query(`UPDATE jobs SET created_at = created_at - interval '3 days'`);

    await sys.startBot();
    const settled = async () => (await db.prisma.job.findMany({ where: { status: 'failed', errorCode: 'abandoned' } })).length === 2;
    for (let t = 0; t < 100 && !(await settled()); t++) await new Promise((r) => setTimeout(r, 100));
    expect(await settled()).toBe(true);
    expect((await db.prisma.memberUsage.findMany()).map((u) => [u.inFlight, u.images])).toEqual([
      [0, 0],
      [0, 0],
    ]);
    expect(await queue.getJobCounts('waiting', 'prioritized', 'delayed', 'active')).toEqual({
      waiting: 0,
      prioritized: 0,
      delayed: 0,
      active: 0,
    });

    await sys.startWorker();
    await new Promise((r) => setTimeout(r, 1000));
    expect(sys.a1111.requests.filter((r) => r.path === '/sdapi/v1/txt2img')).toEqual([]);
  } finally {
    await queue.close();
    redis.disconnect();
  }
});
