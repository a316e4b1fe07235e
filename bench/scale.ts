/**
 * Scale: jobs/s and the GPU box's idle gap between jobs with 1, 2 and 4 worker processes against an
 * instant and a 500 ms box (one generation at a time, like a real GPU); the wait of a burst behind a
 * busy box with and without overflow to the cloud; memory (RSS) of the bot idle and with 50 jobs in
 * flight, and of a worker.
 *
 *   npm run bench:scale        (BENCH_JOBS=200 for the instant box, 30 for the 500 ms box;
 *                               BENCH_BURST=10 jobs behind a 2 s box, OVERFLOW_AFTER_S=5)
 */
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { readFile } from 'node:fs/promises';
import { QueueEvents } from 'bullmq';
import { type JobPayload, parseImagineOptions } from '../core/generation.js';
import { createGenerateQueue, createRedis, GENERATE_QUEUE } from '../core/io/queue.js';
import { startFakeDiscord } from '../tests/fakes/discord/server.js';
import type { FakeInteraction } from '../tests/fakes/discord/types.js';
import { startFakeReplicate } from '../tests/fakes/replicate.js';
import { startInstantA1111 } from './instant-a1111.js';
import { benchDatabase, clearPrefix, pct, REDIS_URL, spawnReady, systemEnv } from './support.js';

const out = (s: string) => process.stdout.write(`${s}\n`);

async function rssMb(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) / 1024;
}

async function throughput(workers: number, delayMs: number, jobs: number) {
  const box = await startInstantA1111({ delayMs });
  const prefix = `bench-scale:${randomUUID()}`;
  const env = { REDIS_URL, QUEUE_PREFIX: prefix, A1111_URL: box.url, NSFW_CLASSIFIER: 'off', PROGRESS_POLL_MS: '500' };
  const procs = await Promise.all(Array.from({ length: workers }, async () => (await spawnReady('worker', env)).child));
  const producer = createRedis(REDIS_URL, 'producer');
  const queue = createGenerateQueue(producer, prefix);
  const events = new QueueEvents(GENERATE_QUEUE, { connection: createRedis(REDIS_URL, 'blocking'), prefix });
  await events.waitUntilReady();
  const request = { ...parseImagineOptions({ prompt: 'scale', steps: 4 }), width: 512, height: 512 };
  const added = await queue.addBulk(
    Array.from({ length: jobs }, () => {
      const jobId = randomUUID();
      const data: JobPayload = { v: 1, jobId, guildId: null, request, paidAllowed: false, nsfwAllowed: true };
      return { name: 'txt2img' as const, data, opts: { jobId } };
    }),
  );
  await Promise.all(added.map((j) => j.waitUntilFinished(events, 300_000)));
  const spans = [...box.spans].sort((a, b) => a[0] - b[0]);
  const gaps = spans.slice(1).map((s, i) => s[0] - spans[i]![1]);
  const seconds = (spans.at(-1)![1] - spans[0]![0]) / 1000;
  const workerRss = await Promise.all(procs.map((p) => rssMb(p.pid!)));
  for (const p of procs) p.kill('SIGTERM');
  await Promise.all(procs.map((p) => once(p, 'exit')));
  await events.close();
  await queue.close();
  await producer.quit();
  await box.close();
  await clearPrefix(prefix);
  return { jobsPerS: jobs / seconds, gapP50: pct(gaps, 0.5), gapP95: pct(gaps, 0.95), workerRss: Math.max(...workerRss) };
}

/**
 * A burst of jobs from different members behind one box that takes `boxMs` a job, a Replicate fake
 * beside it: with the guild's budget (overflow on) and without (every job waits for the box). The
 * wait is from enqueue to the result; one warm-up job first, so the box's run time is known.
 */
async function overflowWait(paidAllowed: boolean, boxMs: number, jobs: number, overflowAfterS: number) {
  const box = await startInstantA1111({ delayMs: boxMs });
  const replicate = await startFakeReplicate({ durationMs: 500 });
  const prefix = `bench-scale-overflow:${randomUUID()}`;
  const env = {
    REDIS_URL,
    QUEUE_PREFIX: prefix,
    A1111_URL: box.url,
    BACKENDS: 'a1111,replicate',
    REPLICATE_API_TOKEN: 'r8_fake',
    REPLICATE_API_URL: replicate.url,
    REPLICATE_OUTPUT_ORIGINS: replicate.url,
    OVERFLOW_AFTER_S: String(overflowAfterS),
    NSFW_CLASSIFIER: 'off',
  };
  const worker = (await spawnReady('worker', env)).child;
  const producer = createRedis(REDIS_URL, 'producer');
  const queue = createGenerateQueue(producer, prefix);
  const events = new QueueEvents(GENERATE_QUEUE, { connection: createRedis(REDIS_URL, 'blocking'), prefix });
  await events.waitUntilReady();
  const request = { ...parseImagineOptions({ prompt: 'overflow', steps: 20 }), width: 512, height: 512 };
  const add = (n: number) => {
    const jobId = randomUUID();
    const data: JobPayload = { v: 1, jobId, guildId: null, request, paidAllowed, nsfwAllowed: true };
    return queue.add('txt2img', data, { jobId, priority: 1 + (n % 3) });
  };
  await (await add(0)).waitUntilFinished(events, 120_000);
  const added = await Promise.all(Array.from({ length: jobs }, (_, n) => add(n)));
  const results = await Promise.all(
    added.map((j) => j.waitUntilFinished(events, 600_000) as Promise<{ backend: string; costUsd: number }>),
  );
  const done = await Promise.all(added.map((j) => queue.getJob(j.id!)));
  const waits = done.map((j) => (j!.finishedOn ?? 0) - j!.timestamp);
  worker.kill('SIGTERM');
  await once(worker, 'exit');
  await events.close();
  await queue.close();
  await producer.quit();
  await box.close();
  await replicate.close();
  await clearPrefix(prefix);
  return {
    p50: pct(waits, 0.5),
    p95: pct(waits, 0.95),
    max: Math.max(...waits),
    cloud: results.filter((r) => r.backend === 'replicate').length,
    usd: results.reduce((s, r) => s + r.costUsd, 0),
  };
}

async function botMemory() {
  const stamp = Date.now();
  const db = await benchDatabase('scale');
  // Discord's real heartbeat interval: the fake's 1 s test default makes a busy bot look like a zombie connection.
  const discord = await startFakeDiscord({ heartbeatIntervalMs: 41_250 });
  const box = await startInstantA1111({ delayMs: 500 });
  const prefix = `bench-scale-bot:${stamp}`;
  const env = {
    ...systemEnv({ discordApiUrl: discord.apiUrl, databaseUrl: db.url, prefix }),
    A1111_URL: box.url,
    DEFAULT_DAILY_IMAGES: '100000',
    MAX_QUEUED_PER_USER: '100',
    NSFW_CLASSIFIER: 'off',
  };
  const bot = (await spawnReady('bot', env)).child;
  const worker = (await spawnReady('worker', env)).child;
  await new Promise((r) => setTimeout(r, 2000));
  const idle = await rssMb(bot.pid!);
  const jobs: FakeInteraction[] = [];
  for (let n = 0; n < 50; n++)
    jobs.push(
      await discord.slashCommand({
        name: 'imagine',
        user: { id: String(4100000000000000000n + BigInt(n % 10)), username: `u${n}` },
        options: [{ name: 'prompt', type: 3, value: `mem ${n}` }],
      }),
    );
  await discord.waitFor(
    () => (jobs.every((i) => i.original()?.content.includes('Queued') || (i.original()?.attachments.length ?? 0) > 0) ? true : undefined),
    30_000,
  );
  let loaded = 0;
  for (let k = 0; k < 10; k++) {
    loaded = Math.max(loaded, await rssMb(bot.pid!));
    await new Promise((r) => setTimeout(r, 300));
  }
  const workerRss = await rssMb(worker.pid!);
  bot.kill('SIGKILL');
  worker.kill('SIGKILL');
  await Promise.all([once(bot, 'exit'), once(worker, 'exit')]);
  await discord.close();
  await box.close();
  await clearPrefix(prefix);
  await db.drop();
  return { idle, loaded, workerRss };
}

out(
  `bench/scale: node ${process.version}, ${process.env.BENCH_DIST ? 'compiled dist/' : 'tsx from source'}; one box running one generation at a time; workers are separate processes`,
);
for (const [label, delay, jobs] of [
  ['instant box', 0, Number(process.env.BENCH_JOBS ?? 200)],
  ['500 ms box', 500, 30],
] as const) {
  for (const workers of [1, 2, 4]) {
    const r = await throughput(workers, delay, jobs);
    out(
      `  ${label}, ${workers} worker${workers > 1 ? 's' : ' '}: ${r.jobsPerS.toFixed(1)} jobs/s, GPU idle gap p50 ${r.gapP50.toFixed(1)} ms p95 ${r.gapP95.toFixed(1)} ms, worker RSS ${r.workerRss.toFixed(0)} MB`,
    );
  }
}
{
  const burst = Number(process.env.BENCH_BURST ?? 10);
  const boxMs = 2000;
  const after = 5;
  out(
    `  wait of ${burst} jobs queued at once behind one ${boxMs / 1000} s box (enqueue → result), OVERFLOW_AFTER_S=${after}, Replicate ~0.5 s:`,
  );
  for (const paid of [false, true]) {
    const r = await overflowWait(paid, boxMs, burst, after);
    out(
      `    ${paid ? 'with budget (overflow)   ' : 'without budget (waits)   '}: p50 ${(r.p50 / 1000).toFixed(1)} s, p95 ${(r.p95 / 1000).toFixed(1)} s, max ${(r.max / 1000).toFixed(1)} s; ${r.cloud} of ${burst} on Replicate, $${r.usd.toFixed(4)}`,
    );
  }
}
const m = await botMemory();
out(
  `  memory: bot idle ${m.idle.toFixed(0)} MB, bot with 50 jobs in flight ${m.loaded.toFixed(0)} MB, worker ${m.workerRss.toFixed(0)} MB (classifier off)`,
);
process.exit(0);
