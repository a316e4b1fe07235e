/**
 * Budget: how far a guild's paid spend can pass its monthly budget when many jobs race for it.
 * Worker processes (3 × concurrency 8 by default) take 60 jobs at once for one guild with a $0.05
 * budget and only Replicate to run on; each paid attempt reserves against the month in Redis. Two
 * runs: predictions that take their usual time, and predictions that never finish (every attempt
 * is cut at what it reserved and cancelled, billed its run time). Prints spend vs budget.
 *
 *   npm run bench:budget   (BENCH_WORKERS=3, BENCH_CONCURRENCY=8, BENCH_JOBS=60, BENCH_BUDGET=0.05)
 */
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { QueueEvents } from 'bullmq';
import { budgetMonth } from '../core/budget.js';
import { type JobPayload, parseImagineOptions } from '../core/generation.js';
import { BudgetReservations } from '../core/io/budget-reservations.js';
import { createGenerateQueue, createRedis, GENERATE_QUEUE } from '../core/io/queue.js';
import { ResultStore } from '../core/io/results.js';
import { startFakeReplicate } from '../tests/fakes/replicate.js';
import { clearPrefix, REDIS_URL, spawnReady } from './support.js';

const WORKERS = Number(process.env.BENCH_WORKERS ?? 3);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 8);
const JOBS = Number(process.env.BENCH_JOBS ?? 60);
const BUDGET = Number(process.env.BENCH_BUDGET ?? 0.05);
/** $0.01 a second: a 1 s prediction costs $0.01, one job's price. */
const USD_PER_SECOND = 0.01;
const out = (s: string) => process.stdout.write(`${s}\n`);
const usd = (n: number) => `$${n.toFixed(4)}`;

async function race(label: string, fake: { durationMs: number; mode: 'ok' | 'hang' }) {
  const replicate = await startFakeReplicate({ durationMs: fake.durationMs, mode: fake.mode });
  const prefix = `bench-budget:${randomUUID()}`;
  const env = {
    REDIS_URL,
    QUEUE_PREFIX: prefix,
    BACKENDS: 'replicate',
    REPLICATE_API_TOKEN: 'r8_fake',
    REPLICATE_API_URL: replicate.url,
    REPLICATE_OUTPUT_ORIGINS: replicate.url,
    REPLICATE_USD_PER_SECOND: String(USD_PER_SECOND),
    WORKER_CONCURRENCY: String(CONCURRENCY),
    NSFW_CLASSIFIER: 'off',
  };
  const procs = await Promise.all(Array.from({ length: WORKERS }, async () => (await spawnReady('worker', env)).child));
  const producer = createRedis(REDIS_URL, 'producer');
  const plain = createRedis(REDIS_URL, 'blocking');
  const queue = createGenerateQueue(producer, prefix);
  const eventsConnection = createRedis(REDIS_URL, 'blocking');
  const events = new QueueEvents(GENERATE_QUEUE, { connection: eventsConnection, prefix });
  await events.waitUntilReady();
  const guildId = 'bench-guild';
  const month = budgetMonth(new Date());
  const budgets = new BudgetReservations(plain, prefix);
  // As the bot does at admission: the month seeded from Postgres (nothing spent yet).
  await budgets.seed(guildId, month, BUDGET, 0);
  const request = { ...parseImagineOptions({ prompt: 'budget', steps: 4 }), width: 512, height: 512 };
  const started = performance.now();
  const added = await queue.addBulk(
    Array.from({ length: JOBS }, () => {
      const jobId = randomUUID();
      const data: JobPayload = {
        v: 1,
        jobId,
        guildId,
        request,
        paidAllowed: true,
        budgetLeftUsd: BUDGET,
        budget: { month, limitUsd: BUDGET, spentUsd: 0 },
        nsfwAllowed: true,
      };
      return { name: 'txt2img' as const, data, opts: { jobId } };
    }),
  );
  const ends = await Promise.allSettled(added.map((j) => j.waitUntilFinished(events, 600_000)));
  const seconds = (performance.now() - started) / 1000;
  // What the bot would book: every attempt of every job, from its result or its failure record.
  const results = new ResultStore(plain, prefix, 60);
  let booked = 0;
  let served = 0;
  let spentRefusals = 0;
  for (const [i, end] of ends.entries()) {
    if (end.status === 'fulfilled') {
      served++;
      booked += end.value.costUsd;
    } else {
      const failure = await results.getFailure(added[i]!.id!);
      if (failure?.code === 'budget_spent') spentRefusals++;
      booked += (failure?.attempts ?? []).reduce((s, a) => s + a.costUsd, 0);
    }
  }
  const state = await budgets.read(guildId, month);
  for (const p of procs) p.kill('SIGTERM');
  await Promise.all(procs.map((p) => once(p, 'exit')));
  await events.close();
  await queue.close();
  // Closing QueueEvents leaves a connection it was handed open: the bench would never exit, holding the suite lock.
  await Promise.all([producer.quit(), plain.quit(), eventsConnection.quit()]);
  await replicate.close();
  await clearPrefix(prefix);
  const over = booked - BUDGET;
  out(
    `${label.padEnd(34)} predictions ${String(replicate.predictions.length).padStart(3)}  cancelled ${String(replicate.cancels.length).padStart(2)}  served ${String(served).padStart(2)}  told spent ${String(spentRefusals).padStart(2)}  ` +
      `booked ${usd(booked)} / budget ${usd(BUDGET)}  over by ${usd(Math.max(0, over))} (${((Math.max(0, over) / 0.01) * 100).toFixed(0)} % of one $0.01 job)  ` +
      `hash settled ${usd(state?.settledUsd ?? 0)} reserved ${usd(state?.reservedUsd ?? 0)}  ${seconds.toFixed(1)} s`,
  );
}

out(
  `${WORKERS} workers × concurrency ${CONCURRENCY}, ${JOBS} jobs for one guild, budget ${usd(BUDGET)}, Replicate only at ${usd(USD_PER_SECOND)}/s`,
);
await race('1 s predictions ($0.01 a job)', { durationMs: 1000, mode: 'ok' });
await race('predictions that never finish', { durationMs: 1000, mode: 'hang' });
