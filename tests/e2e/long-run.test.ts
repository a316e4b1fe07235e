import { Redis } from 'ioredis';
import { afterEach, expect } from 'vitest';
import { type BackendStatus, backendStatusKey, readBackendStatus } from '../../core/io/backend-status.js';
import { readLinkStats, recordLinkJob } from '../../core/io/link.js';
import { test } from '../setup/fixtures.js';
import { System } from './harness.js';

/*
 * What a deployment that has run for weeks must not have piled up: state the processes leave
 * behind on paths other than a clean success (a crash, a restart), which a short test run never
 * sees grow.
 */

let sys: System | undefined;
const closers: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  await sys?.stop();
  sys = undefined;
  for (const c of closers.splice(0).reverse()) await c().catch(() => undefined);
});

function redisClient(): Redis {
  const redis = new Redis(process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379');
  closers.push(() => redis.quit());
  return redis;
}

/** The last report a worker process wrote before it was killed (no SIGTERM, so no withdrawal). */
function lastReport(worker: string, at: number): BackendStatus {
  return {
    backend: 'a1111',
    family: 'a1111',
    worker,
    healthy: true,
    detail: 'ok',
    latencyMs: 12,
    circuit: 'closed',
    inFlight: 1,
    paid: false,
    price: '$0.50/GPU-hour',
    at,
    concurrency: 1,
  };
}

test('reports of workers killed without withdrawing them leave the status hash within its hour, though live workers keep it alive', async ({
  db,
  redisPrefix,
}) => {
  const redis = redisClient();
  const key = backendStatusKey(redisPrefix);
  const now = Date.now();
  // A worker that crash-looped (OOM, a box switched off): one field per process id, each left behind.
  const dead = Array.from({ length: 50 }, (_, n) => lastReport(`gpu-host:${1000 + n}`, now - 2 * 3600_000 - n * 60_000));
  // One that died ten minutes ago: moderators still see it in /admin backends ("no recent report").
  const recent = lastReport('gpu-host:2000', now - 10 * 60_000);
  for (const r of [...dead, recent]) await redis.hset(key, `${r.backend}@${r.worker}`, JSON.stringify(r));
  await redis.expire(key, 3600);

  sys = await System.start({ db, redisPrefix, bot: 'none' });
  await sys.worker!.statusOnce();

  const workers = (await readBackendStatus(redis, redisPrefix)).map((s) => s.worker);
  expect(workers).toContain('gpu-host:2000');
  expect(workers.filter((w) => w.startsWith('gpu-host:1'))).toEqual([]);
  // The live worker's own report, and the recent one: nothing else.
  expect(await redis.hlen(key)).toBe(2);
});

test("a linked box's tally keeps its last 7 days of jobs, not one field per day for as long as the box runs jobs", async ({
  redisPrefix,
}) => {
  const redis = redisClient();
  const space = `${redisPrefix}:g:4444444444444444441`;
  const day0 = Date.UTC(2026, 10, 1, 12);
  // A month of a box that runs a few jobs every day (the worker records each one as it completes).
  for (let d = 0; d < 30; d++) for (let n = 0; n < 3; n++) await recordLinkJob(redis, space, 'lnk1', 'sdxl', day0 + d * 86_400_000 + n);
  const fields = Object.keys(await redis.hgetall(`${space}:link:lnk1:stats`)).sort();
  const lastWeek = Array.from({ length: 7 }, (_, i) => `jobs:${new Date(day0 + (23 + i) * 86_400_000).toISOString().slice(0, 10)}`);
  expect(fields).toEqual([...lastWeek, 'lastJobAt', 'model'].sort());
  expect((await readLinkStats(redis, space, 'lnk1', day0 + 29 * 86_400_000)).jobsToday).toBe(3);
});
